// poolrun's per-record work in-process: the record codec (both JSON
// parsers), the JSON string writer, base64, the stream hash, and the
// worker-side adapter running real plugins.

#include "cli/codec.h"

#include <fstream>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "cli/adapter.h"
#include "cli/batch.h"
#include "cli/flags.h"
#include "cli/io.h"
#include "cli/stream_hash.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/pool_fixture.h"

namespace procpool::cli {
namespace {

using ::procpool::testing::Runfile;

Record Parse(const std::string& raw, std::vector<std::string> fields, size_t max_depth = 1000) {
  Record r;
  ParseJsonlRecord(raw, fields, "result", max_depth, &r);
  return r;
}

TEST(CodecTest, FieldsOfAnObject) {
  Record r = Parse(R"({"a": "x\u00e9\n", "b": 5, "c": [1, {"d": null}], "result": 1})",
                   {"a", "b", "c"});
  ASSERT_TRUE(r.error.ok()) << r.error;
  EXPECT_EQ(r.args, (std::vector<std::string>{"x\xC3\xA9\n", "5", "[1,{\"d\":null}]"}));
  EXPECT_TRUE(r.json_object);
  EXPECT_TRUE(r.has_result_key);
}

TEST(CodecTest, TheLastOfADuplicatedKeyCounts) {
  EXPECT_EQ(Parse(R"({"a": "first", "a": "second"})", {"a"}).args,
            std::vector<std::string>{"second"});
}

TEST(CodecTest, WhatSimdjsonRefusesIsStillRead) {
  // A number simdjson does not represent, and a JSON pointer.
  Record r = Parse(R"({"big": 123456789012345678901234567890, "m": {"t": "deep"}})",
                   {"/m/t", "big"});
  ASSERT_TRUE(r.error.ok()) << r.error;
  EXPECT_EQ(r.args[0], "deep");
  EXPECT_EQ(r.args[1].substr(0, 5), "1.234");
}

TEST(CodecTest, MalformedRecordsSayWhy) {
  EXPECT_EQ(Parse("not json", {"a"}).error.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(Parse("{\"a\": 1", {"a"}).error.message(), "not valid JSON"));
  EXPECT_EQ(Parse(R"({"b": 1})", {"a"}).error.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Parse(R"({"a": null})", {"a"}).error.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(Parse("[1]", {"a"}).error.message(), "JSON array"));
  EXPECT_EQ(Parse("{\"a\": \"\xFF\"}", {"a"}).error.code(), absl::StatusCode::kInvalidArgument);
}

TEST(CodecTest, DepthIsLimitedExactly) {
  auto nested = [](int depth) {
    return "{\"a\": " + std::string(depth - 1, '[') + std::string(depth - 1, ']') + "}";
  };
  EXPECT_TRUE(Parse(nested(10), {"a"}, 10).error.ok());
  EXPECT_EQ(Parse(nested(11), {"a"}, 10).error.code(), absl::StatusCode::kResourceExhausted);
  // Past simdjson's size limit, the streaming pass applies the same limit.
  std::string big = "{\"pad\": \"" + std::string(17 << 20, 'x') + "\", \"a\": ";
  EXPECT_TRUE(Parse(big + std::string(9, '[') + std::string(9, ']') + "}", {"a"}, 10).error.ok());
  EXPECT_EQ(Parse(big + std::string(10, '[') + std::string(10, ']') + "}", {"a"}, 10).error.code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(CodecTest, WithoutFieldsAStringIsPassedAndAnythingElseAsText) {
  EXPECT_EQ(Parse(R"("just text")", {}).args, std::vector<std::string>{"just text"});
  EXPECT_EQ(Parse(R"({"x": 1})", {}).args, std::vector<std::string>{R"({"x": 1})"});
}

TEST(CodecTest, JsonStringsAreWrittenAsNlohmannWritesThem) {
  std::mt19937 rng(15);
  const std::vector<std::string> pieces = {"a", "\"", "\\", "\n", "\t", "\x01", "\x1f", "\x7f",
                                           "/", "\xC3\xA9", "\xE4\xB8\xAD", "\xF0\x9F\x98\x80"};
  for (int round = 0; round < 2000; ++round) {
    std::string s;
    for (int k = static_cast<int>(rng() % 10); k > 0; --k) s += pieces[rng() % pieces.size()];
    std::string ours;
    AppendJsonString(&ours, s);
    ASSERT_EQ(ours, nlohmann::json(s).dump()) << s;
  }
  // Invalid UTF-8 becomes U+FFFD, and the result is valid JSON.
  std::string bad;
  AppendJsonString(&bad, "a\xFF" "b\xC3");
  EXPECT_EQ(nlohmann::json::parse(bad).get<std::string>(), "a\xEF\xBF\xBD" "b\xEF\xBF\xBD");
}

TEST(CodecTest, Base64AndUtf8) {
  EXPECT_EQ(Base64(""), "");
  EXPECT_EQ(Base64("f"), "Zg==");
  EXPECT_EQ(Base64("fo"), "Zm8=");
  EXPECT_EQ(Base64("foo"), "Zm9v");
  EXPECT_EQ(Base64("foob\xFF"), "Zm9vYv8=");
  EXPECT_TRUE(IsUtf8("plain \xC3\xA9 \xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsUtf8("\xC0\xAF"));          // overlong
  EXPECT_FALSE(IsUtf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(IsUtf8("\xF4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(IsUtf8("abc\xE4\xB8"));       // truncated
}

TEST(CodecTest, StreamHashIgnoresHowTheStreamIsCut) {
  std::string text;
  for (int i = 0; i < 1000; ++i) text += static_cast<char>('a' + i % 23);
  StreamHash whole;
  whole.Update(text);
  std::mt19937 rng(7);
  for (int round = 0; round < 50; ++round) {
    StreamHash pieces;
    size_t at = 0;
    while (at < text.size()) {
      const size_t n = std::min<size_t>(text.size() - at, rng() % 20);
      pieces.Update(std::string_view(text).substr(at, n));
      at += n;
    }
    ASSERT_EQ(pieces.Value(), whole.Value());
  }
  StreamHash other;
  other.Update(text.substr(1));
  EXPECT_NE(other.Value(), whole.Value());
}

// ---- The adapter, with real plugins ----

BatchRequest Request(const std::string& plugin, const std::string& task,
                     const std::string& signature, Format format,
                     std::vector<std::string> records, std::vector<std::string> fields = {}) {
  BatchRequest req;
  req.job.plugin = Runfile(plugin);
  req.job.task = task;
  req.job.signature = signature;
  req.job.format = static_cast<int32_t>(format);
  req.job.fields = std::move(fields);
  req.job.as = task;
  req.job.max_depth = 1000;
  req.records = std::move(records);
  return req;
}

// The output pieces of `reply`, spliced as poolrun does for objects.
std::vector<std::string> Pieces(const BatchReply& reply) {
  std::vector<std::string> out;
  size_t at = 0;
  for (size_t k = 0; k < reply.lengths.size(); ++k) {
    out.push_back((reply.splice[k] ? "splice:" : "") + reply.output.substr(at, reply.lengths[k]));
    at += reply.lengths[k];
  }
  return out;
}

TEST(AdapterTest, RunsTheTaskOnEachRecordOfABatch) {
  BatchReply reply = RunBatch(Request(
      "plugins/text/libtext.so", "normalize", "std::string(std::string)", Format::kJsonl,
      {R"({"text": "<script>x</script><p>Hello <b>world</b></p>"})", R"({"text": ""})",
       R"(["not", "an object"])", R"({"other": 1})", R"({"text": "a", "normalize": 1})"},
      {"text"}));
  // Objects get only their result back (poolrun splices it into the record
  // it holds); one that has the result's key already is rebuilt whole.
  EXPECT_EQ(Pieces(reply),
            (std::vector<std::string>{"splice:\"Hello world\"", "splice:\"\"",
                                      "{\"text\":\"a\",\"normalize\":\"a\"}\n"}));
  EXPECT_EQ(reply.empty_results, 1u);
  ASSERT_EQ(reply.failures.size(), 2u);
  EXPECT_EQ(reply.failures[0].index, 2u);
  EXPECT_EQ(reply.failures[0].code, static_cast<int32_t>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(reply.failures[1].index, 3u);
  EXPECT_EQ(reply.failures[1].code, static_cast<int32_t>(absl::StatusCode::kNotFound));
}

TEST(AdapterTest, LinesOfNumbersWithATaskThatThrows) {
  BatchReply reply = RunBatch(Request("plugins/faults/libfaults.so", "check_non_negative",
                                      "int(int)", Format::kLines, {"1", " 2 ", "-3", "x"}));
  EXPECT_EQ(reply.output, "1\n2\n");
  ASSERT_EQ(reply.failures.size(), 2u);
  EXPECT_EQ(reply.failures[0].index, 2u);
  EXPECT_EQ(reply.failures[0].code, static_cast<int32_t>(absl::StatusCode::kUnknown));
  EXPECT_TRUE(absl::StrContains(reply.failures[0].message, "negative input: -3"))
      << reply.failures[0].message;
  EXPECT_EQ(reply.failures[1].code, static_cast<int32_t>(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(absl::StrContains(reply.failures[1].message, "not an integer"));
}

TEST(AdapterTest, RefusesATaskOfAnotherSignature) {
  EXPECT_THROW(RunBatch(Request("plugins/text/libtext.so", "normalize", "int(int)",
                                Format::kLines, {"1"})),
               std::invalid_argument);
  EXPECT_THROW(RunBatch(Request("plugins/text/libtext.so", "no_such_task", "int(int)",
                                Format::kLines, {"1"})),
               std::invalid_argument);
}

TEST(AdapterTest, ReadsRecordsFromTheInputFileAndSaysWhenItCannot) {
  const std::string path = ::testing::TempDir() + "/from_file.txt";
  const std::string text = "10\n20\r\n\n30\n";
  {
    std::ofstream f(path, std::ios::binary);
    f << text;
  }
  auto hash = [](std::vector<std::string> records) {
    StreamHash h;
    for (const std::string& r : records) h.Update(r);
    return h.Value();
  };
  BatchRequest req = Request("plugins/faults/libfaults.so", "check_non_negative", "int(int)",
                             Format::kLines, {});
  // The second and the third line, without "\r\n" and the blank line.
  req.from_file = FileSpan{3, 7, hash({"20", "30"}), {0, 5}, {2, 2}};
  // No input open in this process yet: nothing runs, and poolrun is told
  // to send the records itself.
  ASSERT_EQ(OpenFiles("", "") & 2, 0);
  BatchReply reply = RunBatch(req);
  EXPECT_TRUE(absl::StrContains(reply.unread, "no input file open")) << reply.unread;
  EXPECT_TRUE(reply.failures.empty());
  EXPECT_EQ(reply.output, "");
  // Open: read, checked and run.
  ASSERT_EQ(OpenFiles("", path) & 2, 2);
  reply = RunBatch(req);
  EXPECT_EQ(reply.unread, "");
  EXPECT_EQ(reply.output, "20\n30\n");
  // Bytes that no longer hash as poolrun read them, a record outside the
  // span, or a span past the end of the file.
  FileSpan changed = req.from_file;
  changed.hash = hash({"20", "31"});
  req.from_file = changed;
  EXPECT_TRUE(absl::StrContains(RunBatch(req).unread, "changed while poolrun ran"));
  req.from_file = FileSpan{3, 7, hash({"20", "30"}), {0, 6}, {2, 2}};
  EXPECT_TRUE(absl::StrContains(RunBatch(req).unread, "changed while poolrun ran"));
  req.from_file = FileSpan{uint64_t{text.size()} - 1, 5, hash({"0\n???"}), {0}, {5}};
  EXPECT_TRUE(absl::StrContains(RunBatch(req).unread, "changed while poolrun ran"));
  OpenFiles("", "");
}

TEST(AdapterTest, SaysWhichRecordItIsRunning) {
  absl::StatusOr<ProgressSlots> slots = ProgressSlots::Create();
  ASSERT_TRUE(slots.ok()) << slots.status();
  BatchRequest req = Request("plugins/faults/libfaults.so", "check_non_negative", "int(int)",
                             Format::kLines, {"1", "2", "3"});
  req.job.progress_path = slots->path();
  req.seq = 77;
  RunBatch(req);
  std::optional<ProgressSlots::Running> running = slots->Get(77);
  ASSERT_TRUE(running.has_value());
  EXPECT_EQ(running->index, 2u);  // the last one it started
  EXPECT_FALSE(slots->Get(76).has_value());
  EXPECT_FALSE(slots->Get(77 + ProgressSlots::kSlots).has_value());
}

}  // namespace
}  // namespace procpool::cli
