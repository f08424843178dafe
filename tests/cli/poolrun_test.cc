// poolrun end to end: the binary run as a subprocess on the sample data and
// on small inputs written here. Every wait is bounded; nothing is timed.

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/pool_fixture.h"

extern char** environ;

namespace procpool {
namespace {

using ::procpool::testing::Runfile;
using ::procpool::testing::TempPath;
using ::procpool::testing::WaitUntil;
using Json = nlohmann::json;

constexpr absl::Duration kRunLimit = absl::Seconds(120);

std::string Poolrun() { return Runfile("cli/poolrun"); }
std::string TextPlugin() { return Runfile("plugins/text/libtext.so"); }
std::string FaultsPlugin() { return Runfile("plugins/faults/libfaults.so"); }
std::string MathPlugin() { return Runfile("plugins/math/libmath.so"); }
std::string Sample() { return Runfile("data/web_sample_small.jsonl"); }

// Where TempPath's files are: a directory sandboxed workers may be given.
std::string TestTmpDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr && *dir != '\0' ? dir : "/tmp";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out = absl::StrSplit(text, '\n');
  if (!out.empty() && out.back().empty()) out.pop_back();
  return out;
}

std::vector<Json> JsonLines(const std::string& path) {
  std::vector<Json> out;
  for (const std::string& l : Lines(ReadFile(path))) out.push_back(Json::parse(l));
  return out;
}

struct Outcome {
  int exit_code = -1;  // -1 if killed by a signal
  int signal = 0;
  std::string out;
  std::string err;
  long max_rss_kb = 0;
};

// A poolrun process with stdout and stderr in files.
class Child {
 public:
  // `stdin_fd` < 0: /dev/null.
  explicit Child(const std::vector<std::string>& args, int stdin_fd = -1)
      : out_path_(TempPath("stdout")), err_path_(TempPath("stderr")) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (stdin_fd >= 0) {
      posix_spawn_file_actions_adddup2(&fa, stdin_fd, 0);
    } else {
      posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    }
    posix_spawn_file_actions_addopen(&fa, 1, out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    std::vector<std::string> argv = {Poolrun()};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (std::string& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, argv[0].c_str(), &fa, nullptr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      ADD_FAILURE() << "posix_spawn " << argv[0] << ": " << rc;
      pid_ = -1;
    }
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  int pid() const { return pid_; }

  // Waits at most `limit` (then kills it and fails the test).
  Outcome Wait(absl::Duration limit = kRunLimit) {
    Outcome o;
    int status = 0;
    struct rusage ru {};
    bool done = WaitUntil(
        [&] { return ::wait4(pid_, &status, WNOHANG, &ru) == pid_; }, limit);
    if (!done) {
      ADD_FAILURE() << "poolrun did not finish within " << limit << "; killing it";
      ::kill(pid_, SIGKILL);
      ::wait4(pid_, &status, 0, &ru);
    }
    pid_ = -1;
    if (WIFEXITED(status)) o.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) o.signal = WTERMSIG(status);
    o.out = ReadFile(out_path_);
    o.err = ReadFile(err_path_);
    o.max_rss_kb = ru.ru_maxrss;
    return o;
  }

 private:
  std::string out_path_;
  std::string err_path_;
  pid_t pid_ = -1;
};

Outcome RunPoolrun(const std::vector<std::string>& args) { return Child(args).Wait(); }

// The sample's records as the test reads them: the numbers (1-based) and
// lines of those poolrun must dead-letter (bad JSON, no string "text").
struct SampleFacts {
  size_t records = 0;
  std::set<uint64_t> bad_lines;
  std::vector<int> good_ids;  // in input order
};

SampleFacts ReadSample(const std::string& path) {
  SampleFacts f;
  uint64_t line_no = 0;
  for (const std::string& line : Lines(ReadFile(path))) {
    ++line_no;
    ++f.records;
    Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("text") || !j["text"].is_string()) {
      f.bad_lines.insert(line_no);
    } else {
      f.good_ids.push_back(j["id"].get<int>());
    }
  }
  return f;
}

std::set<uint64_t> DeadLetterLines(const std::string& path) {
  std::set<uint64_t> lines;
  for (const Json& j : JsonLines(path)) lines.insert(j["line"].get<uint64_t>());
  return lines;
}

std::vector<int> Ids(const std::vector<Json>& records) {
  std::vector<int> ids;
  for (const Json& j : records) ids.push_back(j["id"].get<int>());
  return ids;
}

// ---- Progress ----

TEST(PoolrunTest, ProgressBarAndSummaryGoToStderr) {
  const std::string in = TempPath("in.txt");
  WriteFile(in, "a\nb\nc\n");
  // --progress draws even though stderr is a file here.
  Outcome o = RunPoolrun({"--plugin", TextPlugin(), "--task", "token_count", "--input", in,
                          "--progress"});
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, "1\n1\n1\n");
  EXPECT_TRUE(absl::StrContains(o.err, "\r")) << o.err;
  EXPECT_TRUE(absl::StrContains(o.err, "100%")) << o.err;
  EXPECT_TRUE(absl::StrContains(o.err, "3 records in")) << o.err;
  // Without a terminal and without --progress: only the summary line.
  Outcome quiet = RunPoolrun({"--plugin", TextPlugin(), "--task", "token_count", "--input", in});
  EXPECT_FALSE(absl::StrContains(quiet.err, "\r")) << quiet.err;
  EXPECT_TRUE(absl::StrContains(quiet.err, "3 records in")) << quiet.err;
}

// ---- Usage and setup errors ----

TEST(PoolrunTest, HelpExplainsUsageOnStdout) {
  Outcome o = RunPoolrun({"--help"});
  EXPECT_EQ(o.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(o.out, "Usage:")) << o.out;
  EXPECT_TRUE(absl::StrContains(o.out, "--resume")) << o.out;
  EXPECT_EQ(o.err, "");
}

TEST(PoolrunTest, MissingPluginIsAUsageErrorNamingThePath) {
  Outcome o = RunPoolrun({"--plugin", "/nonexistent/libnope.so", "--task", "x", "--input", Sample()});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(o.err, "/nonexistent/libnope.so")) << o.err;
  EXPECT_EQ(o.out, "");
}

TEST(PoolrunTest, UnknownTaskListsTheTasksThePluginHas) {
  Outcome o = RunPoolrun({"--plugin", TextPlugin(), "--task", "normalise", "--input", Sample()});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(o.err, "unknown task 'normalise'")) << o.err;
  EXPECT_TRUE(absl::StrContains(o.err, "normalize")) << o.err;
}

TEST(PoolrunTest, UnsupportedSignatureIsNamed) {
  Outcome o = RunPoolrun({"--plugin", MathPlugin(), "--task", "add", "--input", Sample()});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(o.err, "int(int, int)")) << o.err;
}

TEST(PoolrunTest, WrongNumberOfFieldsIsAUsageError) {
  Outcome o = RunPoolrun({"--plugin", TextPlugin(), "--task", "simhash_distance", "--input", Sample(),
                   "--field", "text"});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(o.err, "takes 2 arguments")) << o.err;
}

TEST(PoolrunTest, MissingInputFileIsAUsageError) {
  Outcome o = RunPoolrun({"--plugin", TextPlugin(), "--task", "normalize", "--input",
                   "/nonexistent/in.jsonl", "--field", "text"});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(o.err, "/nonexistent/in.jsonl")) << o.err;
}

// ---- The sandbox (on by default) ----

TEST(PoolrunTest, WorkersAreSandboxedUnlessNoSandbox) {
  const std::string home = TempPath("home");
  ASSERT_EQ(::mkdir(home.c_str(), 0700), 0);
  const std::string key = home + "/id_ed25519";
  WriteFile(key, "PRIVATE KEY\n");
  const std::string in = TempPath("paths.txt");
  WriteFile(in, key + "\n");
  const std::string hostile = Runfile("tests/testdata/libhostile.so");
  const std::vector<std::string> read = {"--plugin", hostile, "--task", "hostile_read",
                                         "--input", in, "--workers", "1"};

  Outcome sandboxed = RunPoolrun(read);
  EXPECT_EQ(sandboxed.exit_code, 0) << sandboxed.err;
  EXPECT_TRUE(absl::StartsWith(sandboxed.out, "failed: Permission denied")) << sandboxed.out;

  std::vector<std::string> allowed = read;
  allowed.insert(allowed.end(), {"--sandbox-path", home});
  Outcome with_path = RunPoolrun(allowed);
  EXPECT_TRUE(absl::StartsWith(with_path.out, "succeeded: PRIVATE KEY")) << with_path.out;

  std::vector<std::string> unconfined = read;
  unconfined.push_back("--no-sandbox");
  Outcome open = RunPoolrun(unconfined);
  EXPECT_TRUE(absl::StartsWith(open.out, "succeeded: PRIVATE KEY")) << open.out;

  std::vector<std::string> both = unconfined;
  both.insert(both.end(), {"--sandbox-path", home});
  EXPECT_EQ(RunPoolrun(both).exit_code, 2);
}

TEST(PoolrunTest, HelpDescribesTheSandbox) {
  Outcome o = RunPoolrun({"--help"});
  EXPECT_TRUE(absl::StrContains(o.out, "--no-sandbox")) << o.out;
  EXPECT_TRUE(absl::StrContains(o.out, "--sandbox-path")) << o.out;
}

// ---- JSON Lines on the sample data ----

TEST(PoolrunTest, NormalizesTheSampleInInputOrderWithDeadLetters) {
  const SampleFacts facts = ReadSample(Sample());
  ASSERT_GT(facts.bad_lines.size(), 0u);
  const std::string out = TempPath("normalized.jsonl");
  Outcome o = RunPoolrun({"--plugin", TextPlugin(), "--task", "normalize", "--input", Sample(),
                   "--field", "text", "--output", out, "--workers", "2"});
  EXPECT_EQ(o.exit_code, 1) << o.err;  // the sample has malformed records
  EXPECT_EQ(o.out, "");                // nothing but output on stdout: it went to the file
  EXPECT_TRUE(absl::StrContains(o.err, "poolrun: ")) << o.err;
  EXPECT_TRUE(absl::StrContains(o.err, "records/s")) << o.err;

  const std::vector<Json> records = JsonLines(out);
  EXPECT_EQ(Ids(records), facts.good_ids);  // every good record once, in input order
  for (const Json& r : records) {
    ASSERT_TRUE(r.contains("normalize"));
    const std::string n = r["normalize"].get<std::string>();
    // No tags are left ("&lt;3" rightly becomes "<3").
    for (size_t at = n.find('<'); at != std::string::npos; at = n.find('<', at + 1)) {
      ASSERT_LT(at + 1, n.size()) << n;
      EXPECT_FALSE(std::isalpha(static_cast<unsigned char>(n[at + 1])) || n[at + 1] == '/')
          << n.substr(at, 40);
    }
    EXPECT_EQ(n.find("&nbsp;"), std::string::npos) << n;
    EXPECT_EQ(n.find('\n'), std::string::npos) << n;
  }
  EXPECT_EQ(DeadLetterLines(out + ".errors.jsonl"), facts.bad_lines);
  for (const Json& d : JsonLines(out + ".errors.jsonl")) {
    EXPECT_TRUE(d.contains("record") && d.contains("input") && d.contains("error")) << d;
  }
}

TEST(PoolrunTest, UnorderedWritesEveryRecordOnce) {
  const SampleFacts facts = ReadSample(Sample());
  const std::string out = TempPath("unordered.jsonl");
  Outcome o = RunPoolrun({"--plugin", TextPlugin(), "--task", "extract_emails", "--input", Sample(),
                   "--field", "text", "--output", out, "--unordered", "--workers", "2"});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  std::vector<int> ids = Ids(JsonLines(out));
  std::vector<int> expected = facts.good_ids;
  std::sort(ids.begin(), ids.end());
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(ids, expected);
  EXPECT_EQ(DeadLetterLines(out + ".errors.jsonl"), facts.bad_lines);
}

TEST(PoolrunTest, StdoutCarriesOnlyTheOutputAndErrorsGoToStderr) {
  const std::string in = TempPath("in.jsonl");
  WriteFile(in, "{\"text\": \"<b>Hi</b> there\"}\n{\"text\": 5}\nnot json\n{\"other\": 1}\n");
  Outcome o = RunPoolrun({"--plugin", TextPlugin(), "--task", "token_count", "--input", in, "--field",
                   "text", "--result-only"});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_EQ(o.out, "2\n1\n");  // a number field is passed as its JSON text
  EXPECT_TRUE(absl::StrContains(o.err, "\"line\":3")) << o.err;
  EXPECT_TRUE(absl::StrContains(o.err, "not valid JSON")) << o.err;
  EXPECT_TRUE(absl::StrContains(o.err, "field 'text' is missing")) << o.err;
  EXPECT_TRUE(absl::StrContains(o.err, "\"line\":4")) << o.err;
}

TEST(PoolrunTest, MissingFieldDeadLettersEveryRecord) {
  const std::string in = TempPath("in.jsonl");
  WriteFile(in, "{\"text\": \"a\"}\n{\"text\": \"b\"}\n");
  const std::string out = TempPath("out.jsonl");
  Outcome o = RunPoolrun({"--plugin", TextPlugin(), "--task", "normalize", "--input", in, "--field",
                   "body", "--output", out});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_EQ(ReadFile(out), "");
  std::vector<Json> dead = JsonLines(out + ".errors.jsonl");
  ASSERT_EQ(dead.size(), 2u);
  EXPECT_EQ(dead[1]["record"], 2);
  EXPECT_EQ(dead[1]["line"], 2);
  EXPECT_EQ(dead[1]["code"], "NOT_FOUND");
  EXPECT_EQ(dead[1]["input"], "{\"text\": \"b\"}");
}

TEST(PoolrunTest, TwoFieldsAreTwoArgumentsAndJsonPointersWork) {
  const std::string in = TempPath("in.jsonl");
  WriteFile(in,
            "{\"t\": \"Call 020 7946 0958\", \"m\": {\"cc\": \"GB\"}}\n"
            "{\"t\": \"(650) 253-0000\", \"m\": {\"cc\": \"US\"}}\n");
  Outcome o = RunPoolrun({"--plugin", TextPlugin(), "--task", "extract_phones_in", "--input", in,
                   "--field", "t", "--field", "/m/cc", "--as", "phones"});
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out,
            "{\"t\": \"Call 020 7946 0958\", \"m\": {\"cc\": \"GB\"},\"phones\":[\"+442079460958\"]}\n"
            "{\"t\": \"(650) 253-0000\", \"m\": {\"cc\": \"US\"},\"phones\":[\"+16502530000\"]}\n");
}

TEST(PoolrunTest, SummaryCountsEmptyResultsAndCpuPerRecord) {
  const std::string in = TempPath("empty_results.jsonl");
  WriteFile(in, "{\"text\": \"<script>only a script</script>\"}\n{\"text\": \"<p>words</p>\"}\n"
                "{\"text\": \"\"}\n");
  Outcome o = RunPoolrun({"--plugin", TextPlugin(), "--task", "normalize", "--input", in,
                          "--field", "text", "--output", TempPath("empty_results_out.jsonl")});
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_TRUE(absl::StrContains(o.err, "3 written to")) << o.err;
  EXPECT_TRUE(absl::StrContains(o.err, "(2 of them empty)")) << o.err;
  EXPECT_TRUE(absl::StrContains(o.err, "CPU per record: poolrun ")) << o.err;
  EXPECT_TRUE(absl::StrContains(o.err, " us, workers ")) << o.err;
}

// ---- Hostile records ----

// A JSON array nested `depth` deep.
std::string Nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

TEST(PoolrunTest, DeeplyNestedRecordsAreDeadLettersNotCrashes) {
  const std::string in = TempPath("deep.jsonl");
  WriteFile(in, absl::StrCat("{\"id\": 0, \"text\": \"before\"}\n",          //
                             "{\"id\": 1, \"text\": ", Nested(100000), "}\n",  //
                             Nested(100000), "\n",                           //
                             "{\"id\": 3, \"text\": ", Nested(900), "}\n",     //
                             "{\"id\": 4, \"text\": \"after\"}\n"));
  const std::string out = TempPath("deep_out.jsonl");
  Outcome o = RunPoolrun({"--plugin", TextPlugin(), "--task", "normalize", "--input", in,
                          "--field", "text", "--output", out, "--workers", "2"});
  ASSERT_EQ(o.signal, 0) << o.err;
  EXPECT_EQ(o.exit_code, 1) << o.err;
  // Nesting within the limit is passed as its JSON text.
  std::vector<Json> written = JsonLines(out);
  EXPECT_EQ(Ids(written), (std::vector<int>{0, 3, 4}));
  std::vector<Json> dead = JsonLines(out + ".errors.jsonl");
  ASSERT_EQ(dead.size(), 2u);
  for (const Json& d : dead) {
    EXPECT_EQ(d["code"], "RESOURCE_EXHAUSTED") << d["error"];
    EXPECT_TRUE(absl::StrContains(d["error"].get<std::string>(), "--max-depth")) << d["error"];
  }
  EXPECT_EQ(dead[0]["line"], 2);
  EXPECT_EQ(dead[1]["line"], 3);
}

TEST(PoolrunTest, RecordsLargerThanTheLimitAreDeadLetters) {
  const std::string in = TempPath("big.txt");
  WriteFile(in, absl::StrCat("small\n", std::string(5000, 'x'), "\nsmall again\n"));
  const std::string errors = TempPath("big_errors.jsonl");
  Outcome o = RunPoolrun({"--plugin", TextPlugin(), "--task", "token_count", "--input", in,
                          "--max-record-bytes", "4096", "--errors", errors});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_EQ(o.out, "1\n2\n");
  std::vector<Json> dead = JsonLines(errors);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0]["line"], 2);
  EXPECT_EQ(dead[0]["code"], "RESOURCE_EXHAUSTED");
  EXPECT_TRUE(absl::StrContains(dead[0]["error"].get<std::string>(), "5000 bytes")) << dead[0];
}

// ---- --memory-limit (PoolOptions::limits.memory_bytes) ----

TEST(PoolrunTest, MemoryLimitDeadLettersTheRecordOverItAndTheRunGoesOn) {
  const std::string in = TempPath("mib.txt");
  WriteFile(in, "1\n2\n400\n3\n");
  const std::string errors = TempPath("mib_errors.jsonl");
  Outcome o = RunPoolrun({"--plugin", testing::ProbePlugin(), "--task", "allocate_mib",
                          "--input", in, "--memory-limit", "64M", "--workers", "1",
                          "--errors", errors});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_EQ(o.out, "1\n2\n3\n");
  std::vector<Json> dead = JsonLines(errors);
  ASSERT_EQ(dead.size(), 1u) << o.err;
  EXPECT_EQ(dead[0]["line"], 3);
  EXPECT_EQ(dead[0]["code"], "RESOURCE_EXHAUSTED");
  EXPECT_TRUE(absl::StrContains(dead[0]["error"].get<std::string>(), "memory limit of 64 MiB"))
      << dead[0];

  for (const char* bad : {"12M", "lots", "-5G"}) {
    Outcome u = RunPoolrun({"--plugin", testing::ProbePlugin(), "--task", "allocate_mib",
                            "--input", in, "--memory-limit", bad});
    EXPECT_EQ(u.exit_code, 2) << bad;
    EXPECT_TRUE(absl::StrContains(u.err, "--memory-limit")) << u.err;
  }
}

// The base64 of `bytes`, as RFC 4648 spells it.
std::string Base64(const std::string& bytes) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    for (int k = 3; k >= 0; --k) out.push_back(kAlphabet[(v >> (6 * k)) & 63]);
  }
  if (i + 1 == bytes.size()) {
    const uint32_t v = static_cast<unsigned char>(bytes[i]) << 16;
    out += {kAlphabet[(v >> 18) & 63], kAlphabet[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    const uint32_t v = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8);
    out += {kAlphabet[(v >> 18) & 63], kAlphabet[(v >> 12) & 63], kAlphabet[(v >> 6) & 63], '='};
  }
  return out;
}

TEST(PoolrunTest, DeadLettersOfInvalidUtf8KeepTheRawBytes) {
  const std::string bad = "{\"text\": \"caf\xE9 \xFF\xFE\", \"id\": 1";  // Latin-1, truncated JSON
  const std::string good = "{\"text\": \"ok\", \"id\": 2}";
  const std::string in = TempPath("latin1.jsonl");
  WriteFile(in, absl::StrCat(bad, "\n", good, "\n", "{\"nope\": 1}\n"));
  const std::string out = TempPath("latin1_out.jsonl");
  Outcome o = RunPoolrun({"--plugin", TextPlugin(), "--task", "normalize", "--input", in,
                          "--field", "text", "--output", out});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  std::vector<Json> dead = JsonLines(out + ".errors.jsonl");
  ASSERT_EQ(dead.size(), 2u);
  // The record is not UTF-8: its bytes are kept exactly, in base64.
  EXPECT_EQ(dead[0]["line"], 1);
  ASSERT_TRUE(dead[0].contains("input_bytes")) << dead[0];
  EXPECT_EQ(dead[0]["input_bytes"], Base64(bad));
  // A record that is UTF-8 needs no copy: "input" holds it exactly.
  EXPECT_EQ(dead[1]["input"], "{\"nope\": 1}");
  EXPECT_FALSE(dead[1].contains("input_bytes")) << dead[1];
}

// ---- CSV and lines ----

TEST(PoolrunTest, CsvInCsvOutWithQuotedFieldsAndAMalformedRow) {
  const std::string in = TempPath("in.csv");
  WriteFile(in,
            "id,text\r\n"
            "1,\"Hello, <b>world</b>\"\r\n"
            "2,\"two\nlines, \"\"quoted\"\"\"\r\n"
            "3,\"bad \"quote\r\n"
            "4,plain\r\n"
            "5\r\n");
  const std::string out = TempPath("out.csv");
  Outcome o = RunPoolrun({"--plugin", TextPlugin(), "--task", "normalize", "--input", in, "--field",
                   "text", "--output", out, "--as", "clean"});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_EQ(ReadFile(out),
            "id,text,clean\r\n"
            "1,\"Hello, <b>world</b>\",\"Hello, world\"\r\n"
            "2,\"two\nlines, \"\"quoted\"\"\",\"two lines, \"\"quoted\"\"\"\r\n"
            "4,plain,plain\r\n");
  std::vector<Json> dead = JsonLines(out + ".errors.jsonl");
  ASSERT_EQ(dead.size(), 2u);
  EXPECT_EQ(dead[0]["line"], 5);  // the header is line 1; record 2 spans lines 3-4
  EXPECT_EQ(dead[0]["record"], 3);
  EXPECT_TRUE(absl::StrContains(dead[0]["error"].get<std::string>(), "malformed CSV"));
  EXPECT_EQ(dead[1]["line"], 7);
  EXPECT_TRUE(absl::StrContains(dead[1]["error"].get<std::string>(), "1 fields"));
}

TEST(PoolrunTest, CsvFieldThatIsNotAColumnIsAUsageError) {
  const std::string in = TempPath("in.csv");
  WriteFile(in, "id,text\n1,a\n");
  Outcome o = RunPoolrun({"--plugin", TextPlugin(), "--task", "normalize", "--input", in, "--field",
                   "body"});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(o.err, "columns: id, text")) << o.err;
}

TEST(PoolrunTest, LinesOfNumbersWithTaskErrorsAndUnparsableRecords) {
  const std::string in = TempPath("numbers.txt");
  WriteFile(in, "1\n-2\n3\nabc\n5");
  const std::string errors = TempPath("errors.jsonl");
  Outcome o = RunPoolrun({"--plugin", FaultsPlugin(), "--task", "check_non_negative", "--input", in,
                   "--errors", errors});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_EQ(o.out, "1\n3\n5\n");
  std::vector<Json> dead = JsonLines(errors);
  ASSERT_EQ(dead.size(), 2u);
  std::set<int> lines = {dead[0]["line"].get<int>(), dead[1]["line"].get<int>()};
  EXPECT_EQ(lines, (std::set<int>{2, 4}));
  for (const Json& d : dead) {
    if (d["line"] == 2) {
      EXPECT_EQ(d["code"], "UNKNOWN");
      EXPECT_TRUE(absl::StrContains(d["error"].get<std::string>(), "negative input")) << d;
    } else {
      EXPECT_EQ(d["code"], "INVALID_ARGUMENT");
      EXPECT_TRUE(absl::StrContains(d["error"].get<std::string>(), "not an integer")) << d;
    }
  }
}

// ---- Injected crashes (faults plugin) ----

// Runs crash_first_time over 12 records, every third of which crashes its
// worker, with `extra` flags: the others succeed, those are dead letters.
void ExpectCrashingRecordsDeadLettered(const std::vector<std::string>& extra) {
  // crash_first_time segfaults its worker unless its file exists: records
  // naming an existing file succeed, the others crash.
  std::string input;
  std::set<int> crashing_lines;
  for (int i = 1; i <= 12; ++i) {
    const std::string path = TempPath(absl::StrCat("marker", i));
    if (i % 3 != 0) {
      WriteFile(path, "");
    } else {
      crashing_lines.insert(i);
    }
    absl::StrAppend(&input, path, "\n");
  }
  const std::string in = TempPath("paths.txt");
  WriteFile(in, input);
  const std::string out = TempPath("out.txt");
  // The task creates its files: the sandboxed workers may write there.
  std::vector<std::string> args = {"--plugin", FaultsPlugin(), "--task", "crash_first_time",
                                   "--input", in, "--output", out, "--workers", "2",
                                   "--sandbox-write-path", TestTmpDir()};
  args.insert(args.end(), extra.begin(), extra.end());
  Outcome o = RunPoolrun(args);
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_EQ(Lines(ReadFile(out)).size(), 8u);
  std::set<int> dead_lines;
  for (const Json& d : JsonLines(out + ".errors.jsonl")) {
    dead_lines.insert(d["line"].get<int>());
    EXPECT_EQ(d["code"], "ABORTED") << d;
    EXPECT_TRUE(absl::StrContains(d["error"].get<std::string>(), "signal")) << d;
  }
  EXPECT_EQ(dead_lines, crashing_lines);
}

TEST(PoolrunTest, RecordsWhoseWorkerCrashesAreDeadLetteredAndTheRunGoesOn) {
  ExpectCrashingRecordsDeadLettered({});
}

TEST(PoolrunTest, WorkersForkedFromATemplateDoTheSame) {
  ExpectCrashingRecordsDeadLettered({"--start-method", "zygote"});
}

TEST(PoolrunTest, AnUnknownStartMethodIsAUsageError) {
  Outcome o = RunPoolrun({"--plugin", FaultsPlugin(), "--task", "crash_first_time",
                          "--start-method", "vfork"});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(o.err, "--start-method")) << o.err;
}

TEST(PoolrunTest, RetriesPassThroughToThePool) {
  std::string input;
  for (int i = 1; i <= 4; ++i) absl::StrAppend(&input, TempPath(absl::StrCat("once", i)), "\n");
  const std::string in = TempPath("paths.txt");
  WriteFile(in, input);
  Outcome o = RunPoolrun({"--plugin", FaultsPlugin(), "--task", "crash_first_time", "--input", in,
                   "--retries", "1", "--workers", "2", "--sandbox-write-path", TestTmpDir()});
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, "1\n1\n1\n1\n");
}

TEST(PoolrunTest, TimeoutDeadLettersTheSlowRecord) {
  const std::string in = TempPath("ms.txt");
  WriteFile(in, "1\n60000\n2\n");
  Outcome o = RunPoolrun({"--plugin", FaultsPlugin(), "--task", "sleep_ms", "--input", in,
                   "--timeout", "300ms", "--workers", "2"});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_EQ(o.out, "1\n2\n");
  EXPECT_TRUE(absl::StrContains(o.err, "RESOURCE_EXHAUSTED")) << o.err;
}

// ---- Interruptions ----

// {"id": i, "ms": ms} records for faults' sleep_ms: slow enough to stop
// mid-run.
std::string SlowInput(int n, int ms) {
  const std::string in = TempPath("slow.jsonl");
  std::string text;
  for (int i = 0; i < n; ++i) absl::StrAppend(&text, "{\"id\": ", i, ", \"ms\": ", ms, "}\n");
  WriteFile(in, text);
  return in;
}

// Waits until the checkpoint says at least `records` are done.
bool CheckpointReaches(const std::string& path, uint64_t records) {
  return WaitUntil(
      [&] {
        Json j = Json::parse(ReadFile(path), nullptr, false);
        return !j.is_discarded() && j.contains("done_prefix") &&
               j["done_prefix"].get<uint64_t>() >= records;
      },
      absl::Seconds(60));
}

void ExpectEachIdOnceInOrder(const std::string& out, int n) {
  std::vector<int> expected(n);
  for (int i = 0; i < n; ++i) expected[i] = i;
  EXPECT_EQ(Ids(JsonLines(out)), expected);
}

TEST(PoolrunTest, ResumeAfterSigkillWritesEachRecordExactlyOnce) {
  constexpr int kRecords = 1500;
  const std::string in = SlowInput(kRecords, 4);
  const std::string out = TempPath("resumed.jsonl");
  const std::vector<std::string> args = {"--plugin", FaultsPlugin(), "--task", "sleep_ms",
                                         "--input", in, "--field", "ms", "--output", out,
                                         "--workers", "2"};
  {
    Child first(args);
    ASSERT_TRUE(CheckpointReaches(out + ".poolrun-checkpoint", 100));
    ASSERT_EQ(::kill(first.pid(), SIGKILL), 0);
    Outcome killed = first.Wait();
    ASSERT_EQ(killed.signal, SIGKILL);
  }
  // The output may end with records written after the last checkpoint (and
  // a torn line); --resume cuts it back and goes on.
  std::vector<std::string> resume = args;
  resume.push_back("--resume");
  Outcome o = RunPoolrun(resume);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_TRUE(absl::StrContains(o.err, "resumed after")) << o.err;
  ExpectEachIdOnceInOrder(out, kRecords);

  // Once complete, --resume has nothing to do.
  Outcome again = RunPoolrun(resume);
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_TRUE(absl::StrContains(again.err, "already complete")) << again.err;
}

// Runs `args` until the checkpoint holds 100 records, then SIGKILLs it.
void KillAfterACheckpoint(const std::vector<std::string>& args, const std::string& out,
                          int stdin_fd = -1) {
  Child first(args, stdin_fd);
  ASSERT_TRUE(CheckpointReaches(out + ".poolrun-checkpoint", 100));
  ASSERT_EQ(::kill(first.pid(), SIGKILL), 0);
  ASSERT_EQ(first.Wait().signal, SIGKILL);
}

TEST(PoolrunTest, ResumeRefusesAnInputThatChangedUnderTheCheckpoint) {
  constexpr int kRecords = 1500;
  const std::string in = SlowInput(kRecords, 4);
  const std::string out = TempPath("changed.jsonl");
  const std::vector<std::string> args = {"--plugin", FaultsPlugin(), "--task", "sleep_ms",
                                         "--input", in, "--field", "ms", "--output", out,
                                         "--workers", "2"};
  KillAfterACheckpoint(args, out);
  const std::string checkpoint = ReadFile(out + ".poolrun-checkpoint");
  const std::string output = ReadFile(out);
  // The first 1,000 lines go away.
  std::vector<std::string> lines = Lines(ReadFile(in));
  WriteFile(in, absl::StrCat(absl::StrJoin(lines.begin() + 1000, lines.end(), "\n"), "\n"));

  std::vector<std::string> resume = args;
  resume.push_back("--resume");
  Outcome o = RunPoolrun(resume);
  EXPECT_EQ(o.exit_code, 2) << o.err;
  EXPECT_TRUE(absl::StrContains(o.err, "not the one the checkpoint was made against")) << o.err;
  EXPECT_TRUE(absl::StrContains(o.err, "without --resume")) << o.err;
  // Nothing was touched.
  EXPECT_EQ(ReadFile(out + ".poolrun-checkpoint"), checkpoint);
  EXPECT_EQ(ReadFile(out), output);

  // Starting over works.
  Outcome again = RunPoolrun(args);
  EXPECT_EQ(again.exit_code, 0) << again.err;
  std::vector<int> expected;
  for (int i = 1000; i < kRecords; ++i) expected.push_back(i);
  EXPECT_EQ(Ids(JsonLines(out)), expected);
}

TEST(PoolrunTest, ResumeAcceptsAnInputThatOnlyGrew) {
  constexpr int kRecords = 1500;
  const std::string in = SlowInput(kRecords, 4);
  const std::string out = TempPath("grown.jsonl");
  const std::vector<std::string> args = {"--plugin", FaultsPlugin(), "--task", "sleep_ms",
                                         "--input", in, "--field", "ms", "--output", out,
                                         "--workers", "2"};
  KillAfterACheckpoint(args, out);
  std::string more;
  for (int i = kRecords; i < kRecords + 10; ++i) absl::StrAppend(&more, "{\"id\": ", i, ", \"ms\": 1}\n");
  WriteFile(in, ReadFile(in) + more);
  std::vector<std::string> resume = args;
  resume.push_back("--resume");
  Outcome o = RunPoolrun(resume);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  ExpectEachIdOnceInOrder(out, kRecords + 10);
}

TEST(PoolrunTest, ResumeRefusesAnotherStdin) {
  constexpr int kRecords = 1500;
  const std::string in = SlowInput(kRecords, 4);
  const std::string out = TempPath("stdin.jsonl");
  const std::vector<std::string> args = {"--plugin", FaultsPlugin(), "--task", "sleep_ms",
                                         "--format", "jsonl", "--field", "ms", "--output", out,
                                         "--workers", "2"};
  {
    const int fd = ::open(in.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    KillAfterACheckpoint(args, out, fd);
    ::close(fd);
  }
  // The same stream without its first 200 records.
  std::vector<std::string> lines = Lines(ReadFile(in));
  const std::string other = TempPath("other_stdin.jsonl");
  WriteFile(other, absl::StrCat(absl::StrJoin(lines.begin() + 200, lines.end(), "\n"), "\n"));
  std::vector<std::string> resume = args;
  resume.push_back("--resume");
  const int fd = ::open(other.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  Outcome o = Child(resume, fd).Wait();
  ::close(fd);
  EXPECT_EQ(o.exit_code, 2) << o.err;
  EXPECT_TRUE(absl::StrContains(o.err, "not the one the checkpoint was made against")) << o.err;
}

TEST(PoolrunTest, SigintFinishesInFlightRecordsAndExits130) {
  constexpr int kRecords = 1500;
  const std::string in = SlowInput(kRecords, 4);
  const std::string out = TempPath("interrupted.jsonl");
  const std::vector<std::string> args = {"--plugin", FaultsPlugin(), "--task", "sleep_ms",
                                         "--input", in, "--field", "ms", "--output", out,
                                         "--workers", "2", "--unordered"};
  Child first(args);
  ASSERT_TRUE(CheckpointReaches(out + ".poolrun-checkpoint", 100));
  ASSERT_EQ(::kill(first.pid(), SIGINT), 0);
  Outcome o = first.Wait();
  EXPECT_EQ(o.exit_code, 130) << o.err;
  EXPECT_TRUE(absl::StrContains(o.err, "--resume")) << o.err;
  // Clean: every line is a whole record, none twice, and the run stopped early.
  std::vector<int> ids = Ids(JsonLines(out));
  EXPECT_LT(ids.size(), static_cast<size_t>(kRecords));
  EXPECT_EQ(std::set<int>(ids.begin(), ids.end()).size(), ids.size());

  std::vector<std::string> resume = args;
  resume.push_back("--resume");
  Outcome rest = RunPoolrun(resume);
  EXPECT_EQ(rest.exit_code, 0) << rest.err;
  ids = Ids(JsonLines(out));
  std::sort(ids.begin(), ids.end());
  std::vector<int> expected(kRecords);
  for (int i = 0; i < kRecords; ++i) expected[i] = i;
  EXPECT_EQ(ids, expected);
}

TEST(PoolrunTest, ResumeRefusesAnotherCommandsCheckpoint) {
  const std::string in = SlowInput(10, 1);
  const std::string out = TempPath("other.jsonl");
  ASSERT_EQ(RunPoolrun({"--plugin", FaultsPlugin(), "--task", "sleep_ms", "--input", in, "--field",
                 "ms", "--output", out})
                .exit_code,
            0);
  Outcome o = RunPoolrun({"--plugin", FaultsPlugin(), "--task", "check_non_negative", "--input", in,
                   "--field", "ms", "--output", out, "--resume"});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(o.err, "another command")) << o.err;
}

// ---- Memory ----

TEST(PoolrunTest, MemoryStaysFlatOnAStreamLargerThanIt) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "sanitizers' shadow memory and quarantine make RSS meaningless";
#endif
  // 256 MiB of 16 KiB lines through stdin, echoed by math's identity task to
  // /dev/null: poolrun's peak RSS must stay far below the stream's size.
  constexpr size_t kLine = 16 << 10;
  constexpr size_t kLines = 16 << 10;  // 256 MiB
  ::signal(SIGPIPE, SIG_IGN);  // if poolrun fails early, report it, do not die
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  Child child({"--plugin", MathPlugin(), "--task", "identity", "--output", "/dev/null",
               "--workers", "2", "--no-progress"},
              fds[0]);
  ::close(fds[0]);
  std::thread writer([fd = fds[1]] {
    std::string line(kLine - 1, 'x');
    line.push_back('\n');
    for (size_t i = 0; i < kLines; ++i) {
      line[0] = static_cast<char>('a' + i % 26);
      size_t done = 0;
      while (done < line.size()) {
        ssize_t n = ::write(fd, line.data() + done, line.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          ::close(fd);
          return;
        }
        done += static_cast<size_t>(n);
      }
    }
    ::close(fd);  // EOF for poolrun
  });
  Outcome o = child.Wait();
  writer.join();
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_TRUE(absl::StrContains(o.err, "16,384 records")) << o.err;
  // poolrun's own peak, from its summary line.
  const size_t at = o.err.find("peak memory ");
  ASSERT_NE(at, std::string::npos) << o.err;
  const int self_mib = std::atoi(o.err.c_str() + at + 12);
  std::printf("poolrun peak RSS on a 256 MiB stream: %d MiB (with its workers: %ld KiB)\n",
              self_mib, o.max_rss_kb);
  EXPECT_LT(self_mib, 96) << o.err;
  // With the workers it reaped (wait4 reports the largest).
  EXPECT_LT(o.max_rss_kb, 160 * 1024) << "peak RSS " << o.max_rss_kb << " KiB";
}

// ---- Huge records, read by the worker from the input file ----

// Records for faults' sleep_ms: {"id": i, "ms": ms[i], "pad": pad[i]}.
std::string PaddedInput(const std::vector<int>& ms, const std::vector<std::string>& pad) {
  const std::string in = TempPath("padded.jsonl");
  std::string text;
  for (size_t i = 0; i < ms.size(); ++i) {
    absl::StrAppend(&text, "{\"id\": ", i, ", \"ms\": ", ms[i], ", \"pad\": \"", pad[i], "\"}\n");
  }
  WriteFile(in, text);
  return in;
}

TEST(PoolrunTest, AHugeRecordReadFromTheFileByItsWorkerComesOutAsFromStdin) {
  // A record of 16 MiB or more in a regular file is not sent: the worker
  // reads it from the file (BatchRequest::from_file). The output is the
  // same as when poolrun sends it (the input on stdin).
  const std::string huge(size_t{17} << 20, 'a');
  const std::string in = PaddedInput({1, 2, 3}, {"x", huge, "y"});
  const std::vector<std::string> args = {"--plugin", FaultsPlugin(), "--task", "sleep_ms",
                                         "--field", "ms", "--workers", "1"};
  std::vector<std::string> from_file = args;
  from_file.insert(from_file.end(), {"--input", in});
  Outcome a = RunPoolrun(from_file);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_FALSE(absl::StrContains(a.err, "could not read it from the input")) << a.err;
  const int fd = ::open(in.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::vector<std::string> from_stdin = args;
  from_stdin.insert(from_stdin.end(), {"--input", "-", "--format", "jsonl"});
  Outcome b = Child(from_stdin, fd).Wait();
  ::close(fd);
  ASSERT_EQ(b.exit_code, 0) << b.err;
  // Stdin, even a regular file, is not the workers' to read: poolrun sends.
  EXPECT_FALSE(absl::StrContains(b.err, "could not read it from the input")) << b.err;
  EXPECT_TRUE(a.out == b.out) << "outputs differ: " << a.out.size() << " and " << b.out.size()
                              << " bytes";
  const std::vector<std::string> lines = Lines(a.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(Json::parse(lines[1])["pad"].get<std::string>(), huge);
  EXPECT_EQ(Json::parse(lines[1])["sleep_ms"].get<int>(), 2);
}

// Where process `pid` has read its descriptor on `path` to (-1: none open).
int64_t ReadOffset(int pid, const std::string& path) {
  const std::string dir = absl::StrCat("/proc/", pid, "/fd");
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return -1;
  int64_t pos = -1;
  while (dirent* e = ::readdir(d)) {
    char target[4096];
    const ssize_t n = ::readlink((dir + "/" + e->d_name).c_str(), target, sizeof(target) - 1);
    if (n <= 0 || std::string(target, static_cast<size_t>(n)) != path) continue;
    std::istringstream info(ReadFile(absl::StrCat("/proc/", pid, "/fdinfo/", e->d_name)));
    std::string key;
    while (info >> key) {
      if (key == "pos:") {
        info >> pos;
        break;
      }
    }
  }
  ::closedir(d);
  return pos;
}

TEST(PoolrunTest, RecordsChangedInTheFileBeforeTheirWorkerReadsThemAreSentByPoolrun) {
  // The workers read the two huge records (each a batch of its own) only
  // after the 3 s record before them; meanwhile, once poolrun has read the
  // whole file, their bytes change in place. The workers find them
  // changed and poolrun sends the records as it read them, saying so once:
  // the output holds what poolrun read, not the edit.
  const std::string huge(size_t{17} << 20, 'a');
  const std::string in = PaddedInput({3000, 1, 2}, {"x", huge, huge});
  Child child({"--plugin", FaultsPlugin(), "--task", "sleep_ms", "--field", "ms", "--input", in,
               "--workers", "1", "--no-progress"});
  const int64_t size = static_cast<int64_t>(ReadFile(in).size());
  ASSERT_TRUE(WaitUntil([&] { return ReadOffset(child.pid(), in) == size; }, absl::Seconds(60)))
      << "poolrun never read the whole input";
  {
    const std::string text = ReadFile(in);
    const int fd = ::open(in.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    const std::string edit(4096, 'b');
    for (size_t at = text.find("aaaa"); at != std::string::npos;
         at = text.find("aaaa", text.find("\n", at))) {
      ASSERT_EQ(::pwrite(fd, edit.data(), edit.size(), static_cast<off_t>(at)), 4096);
    }
    ::close(fd);
  }
  Outcome o = child.Wait();
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_TRUE(absl::StrContains(o.err, "changed while poolrun ran")) << o.err;
  size_t notices = 0;
  for (size_t at = o.err.find("could not read"); at != std::string::npos;
       at = o.err.find("could not read", at + 1)) {
    ++notices;
  }
  EXPECT_EQ(notices, 1u) << o.err;
  const std::vector<std::string> lines = Lines(o.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(Json::parse(lines[1])["pad"].get<std::string>(), huge);
  EXPECT_EQ(Json::parse(lines[2])["pad"].get<std::string>(), huge);
  EXPECT_EQ(Json::parse(lines[2])["sleep_ms"].get<int>(), 2);
}

}  // namespace
}  // namespace procpool
