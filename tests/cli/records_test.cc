// poolrun's parts in-process: flags, the record readers (CSV corner cases
// through libcsv), result formatting, the done set and checkpoints.

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "cli/checkpoint.h"
#include "cli/flags.h"
#include "cli/format.h"
#include "cli/io.h"
#include "cli/records.h"
#include "gtest/gtest.h"
#include "tests/testing/pool_fixture.h"

namespace procpool::cli {
namespace {

using ::procpool::testing::TempPath;

std::string WriteTemp(const std::string& text) {
  const std::string path = TempPath("input");
  absl::StatusOr<OutputFile> f = OutputFile::Open(path, 0, 1);
  EXPECT_TRUE(f.ok());
  f->Write(text);
  EXPECT_TRUE(f->Flush().ok());
  return path;
}

PoolrunOptions Opts(Format format, std::vector<std::string> fields = {}) {
  PoolrunOptions o;
  o.format = format;
  o.fields = std::move(fields);
  o.as = "result";
  return o;
}

std::vector<Record> ReadAll(const PoolrunOptions& o, const std::string& text) {
  absl::StatusOr<LineReader> lines = LineReader::Open(WriteTemp(text));
  EXPECT_TRUE(lines.ok());
  absl::StatusOr<std::unique_ptr<RecordReader>> reader = RecordReader::Create(o, *std::move(lines));
  EXPECT_TRUE(reader.ok()) << reader.status();
  std::vector<Record> out;
  Record r;
  while (true) {
    absl::StatusOr<bool> more = (*reader)->Next(&r, true);
    EXPECT_TRUE(more.ok());
    if (!*more) break;
    out.push_back(r);
  }
  return out;
}

TEST(FlagsTest, ParsesRepeatedFieldsAndInfersTheFormat) {
  absl::StatusOr<PoolrunOptions> o = ParseFlags(
      {"--plugin", "p.so", "--task=t", "--input", "x.csv", "--field", "a", "--field=b",
       "--timeout", "1.5s", "--workers", "3", "--unordered"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->format, Format::kCsv);
  EXPECT_EQ(o->fields, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(o->timeout, absl::Milliseconds(1500));
  EXPECT_EQ(o->workers, 3);
  EXPECT_TRUE(o->unordered);
  EXPECT_EQ(o->as, "t");
}

TEST(FlagsTest, RejectsMistakesWithInvalidArgument) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--task", "t"},                                             // no plugin
           {"--plugin", "p.so"},                                        // no task
           {"--plugin", "p.so", "--task", "t", "--workers", "-1"},
           {"--plugin", "p.so", "--task", "t", "--format", "xml"},
           {"--plugin", "p.so", "--task", "t", "--timeout", "soon"},
           {"--plugin", "p.so", "--task", "t", "--bogus"},
           {"--plugin", "p.so", "--task", "t", "--field", "x"},        // lines have no fields
           {"--plugin", "p.so", "--task", "t", "--resume"},            // stdout
           {"--plugin", "p.so", "--task", "t", "stray"},
       }) {
    EXPECT_EQ(ParseFlags(args).status().code(), absl::StatusCode::kInvalidArgument)
        << args.back();
  }
}

TEST(RecordsTest, LinesKeepEmptyLinesAndDropCarriageReturns) {
  std::vector<Record> r = ReadAll(Opts(Format::kLines), "a\r\n\nlast");
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].args[0], "a");
  EXPECT_EQ(r[1].args[0], "");
  EXPECT_EQ(r[2].args[0], "last");
  EXPECT_EQ(r[2].line, 3u);
  EXPECT_EQ(r[2].number, 2u);
}

TEST(RecordsTest, JsonlFieldsPointersAndErrors) {
  std::vector<Record> r = ReadAll(Opts(Format::kJsonl, {"a", "/b/0"}),
                                  "{\"a\": \"x\", \"b\": [1]}\n"
                                  "\n"
                                  "{\"a\": null, \"b\": [1]}\n"
                                  "[1, 2]\n"
                                  "{\"a\": \"x\"}\n"
                                  "{\"a\": \"\xff\"}\n"
                                  "{broken\n");
  ASSERT_EQ(r.size(), 6u);  // the blank line is not a record
  EXPECT_TRUE(r[0].error.ok());
  EXPECT_EQ(r[0].args, (std::vector<std::string>{"x", "1"}));
  EXPECT_TRUE(r[0].json_object);
  EXPECT_EQ(r[1].line, 3u);
  EXPECT_EQ(r[1].number, 1u);
  EXPECT_TRUE(absl::StrContains(r[1].error.message(), "is null"));
  EXPECT_TRUE(absl::StrContains(r[2].error.message(), "not an object"));
  EXPECT_EQ(r[3].error.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(r[4].error.message(), "not valid JSON"));  // invalid UTF-8
  EXPECT_TRUE(absl::StrContains(r[5].error.message(), "not valid JSON"));
}

TEST(RecordsTest, JsonlWithoutFieldPassesStringsOrTheJsonText) {
  std::vector<Record> r = ReadAll(Opts(Format::kJsonl), "\"just text\"\n{\"k\": 1}\n");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].args[0], "just text");
  EXPECT_EQ(r[1].args[0], "{\"k\": 1}");
}

TEST(RecordsTest, CsvQuotedNewlinesEmptyFieldsAndNoFinalNewline) {
  std::vector<Record> r = ReadAll(Opts(Format::kCsv, {"b"}),
                                  "a,b\n"
                                  "1,\"multi\nline\"\n"
                                  "\n"
                                  "2,\n"
                                  "3,\"x\"\"y\"");
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].args[0], "multi\nline");
  EXPECT_EQ(r[0].line, 2u);
  EXPECT_EQ(r[0].raw, "1,\"multi\nline\"");
  EXPECT_EQ(r[1].args[0], "");
  EXPECT_EQ(r[1].line, 5u);
  EXPECT_EQ(r[2].args[0], "x\"y");
  EXPECT_EQ(r[2].fields, (std::vector<std::string>{"3", "x\"y"}));
}

TEST(RecordsTest, CsvMalformedRowsAreReportedAndReadingGoesOn) {
  std::vector<Record> r = ReadAll(Opts(Format::kCsv, {"b"}),
                                  "a,b\n"
                                  "1,\"oops\"x\n"
                                  "2,ok\n"
                                  "3,4,5\n"
                                  "4,\"never closed\n");
  ASSERT_EQ(r.size(), 4u);
  EXPECT_TRUE(absl::StrContains(r[0].error.message(), "malformed CSV"));
  EXPECT_TRUE(r[1].error.ok());
  EXPECT_EQ(r[1].args[0], "ok");
  EXPECT_TRUE(absl::StrContains(r[2].error.message(), "3 fields"));
  EXPECT_TRUE(absl::StrContains(r[3].error.message(), "quoted field"));
  EXPECT_EQ(r[3].line, 5u);
}

TEST(RecordsTest, CsvNeedsAFieldWhenThereAreSeveralColumns) {
  absl::StatusOr<LineReader> lines = LineReader::Open(WriteTemp("a,b\n1,2\n"));
  ASSERT_TRUE(lines.ok());
  EXPECT_EQ(RecordReader::Create(Opts(Format::kCsv), *std::move(lines)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(FormatTest, JsonlSplicesTheResultIntoTheInputObject) {
  PoolrunOptions o = Opts(Format::kJsonl, {"t"});
  const std::string path = TempPath("out");
  absl::StatusOr<OutputFile> out = OutputFile::Open(path, 0, 1);
  ASSERT_TRUE(out.ok());
  ResultWriter w(o, {}, &*out);
  Record r;
  r.raw = "{\"t\": \"x\", \"n\": 1.50}";
  r.json_object = true;
  w.Write(r, Json("y"));
  Record empty;
  empty.raw = "{ }";
  empty.json_object = true;
  w.Write(empty, Json(std::vector<int>{1, 2}));
  Record clash;
  clash.raw = "{\"result\": 0, \"z\": 1}";
  clash.json_object = true;
  clash.has_result_key = true;
  w.Write(clash, Json(true));
  Record scalar;
  scalar.raw = "\"s\"";
  w.Write(scalar, Json("bad \xff utf8"));
  ASSERT_TRUE(out->Flush().ok());
  absl::StatusOr<LineReader> lines = LineReader::Open(path);
  std::string line;
  bool term = false;
  std::vector<std::string> got;
  while (*lines->Next(&line, &term)) got.push_back(line);
  EXPECT_EQ(got, (std::vector<std::string>{
                     "{\"t\": \"x\", \"n\": 1.50,\"result\":\"y\"}",
                     "{ \"result\":[1,2]}",
                     "{\"result\":true,\"z\":1}",
                     "{\"input\":\"s\",\"result\":\"bad \xEF\xBF\xBD utf8\"}"}));
}

TEST(FormatTest, DeadLetterNamesRecordLineInputAndCode) {
  Record r;
  r.number = 4;
  r.line = 9;
  r.raw = "in\xff";
  std::string d = DeadLetter(r, absl::AbortedError("worker died"));
  EXPECT_EQ(d,
            "{\"record\":5,\"line\":9,\"input\":\"in\xEF\xBF\xBD\",\"input_bytes\":\"aW7/\","
            "\"error\":\"worker died\",\"code\":\"ABORTED\"}\n");
}

TEST(CheckpointTest, DoneSetKeepsAPrefixAndTheStragglers) {
  DoneSet d;
  d.Add(1);
  d.Add(3);
  EXPECT_EQ(d.prefix(), 0u);
  d.Add(0);
  EXPECT_EQ(d.prefix(), 2u);
  EXPECT_TRUE(d.Contains(3));
  EXPECT_FALSE(d.Contains(2));
  d.Add(2);
  EXPECT_EQ(d.prefix(), 4u);
  EXPECT_TRUE(d.beyond().empty());
  EXPECT_EQ(d.size(), 4u);
}

TEST(CheckpointTest, RoundTripsAndReportsDamage) {
  const std::string path = TempPath("ckpt");
  EXPECT_FALSE(LoadCheckpoint(path)->has_value());
  Checkpoint c;
  c.run = "run";
  c.done = DoneSet::FromParts(10, {12, 15});
  c.output_bytes = 123;
  c.errors_bytes = 4;
  c.succeeded = 9;
  c.failed = 3;
  ASSERT_TRUE(SaveCheckpoint(path, c).ok());
  absl::StatusOr<std::optional<Checkpoint>> back = LoadCheckpoint(path);
  ASSERT_TRUE(back.ok() && back->has_value());
  EXPECT_EQ((*back)->run, "run");
  EXPECT_EQ((*back)->done.prefix(), 10u);
  EXPECT_TRUE((*back)->done.Contains(15));
  EXPECT_FALSE((*back)->done.Contains(13));
  EXPECT_EQ((*back)->output_bytes, 123u);
  EXPECT_FALSE((*back)->complete);
  WriteTemp("");
  absl::StatusOr<OutputFile> f = OutputFile::Open(path, 0, 1);
  f->Write("{not json");
  ASSERT_TRUE(f->Flush().ok());
  EXPECT_EQ(LoadCheckpoint(path).status().code(), absl::StatusCode::kDataLoss);
}

TEST(OutputFileTest, ResumingTruncatesToTheCheckpointAndRefusesShorterFiles) {
  const std::string path = TempPath("out");
  {
    absl::StatusOr<OutputFile> f = OutputFile::Open(path, 0, 1);
    f->Write("keep|drop");
  }
  {
    absl::StatusOr<OutputFile> f = OutputFile::Open(path, 5, 1);
    ASSERT_TRUE(f.ok());
    EXPECT_EQ(f->bytes(), 5u);
    f->Write("new");
  }
  absl::StatusOr<LineReader> r = LineReader::Open(path);
  std::string line;
  bool term;
  ASSERT_TRUE(*r->Next(&line, &term));
  EXPECT_EQ(line, "keep|new");
  EXPECT_EQ(OutputFile::Open(path, 100, 1).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace procpool::cli
