// The words plugin in a pool, from a workspace where procpool is the
// external repository @procpool: the plugin and procpool's worker are found
// in the runfiles, tasks cross with their types checked, and failures arrive
// as the documented status codes.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pool/pool.h"
#include "pool/runfiles.h"
#include "words/words.h"

namespace {

using ::testing::HasSubstr;

procpool::ProcessPool MakePool() {
  absl::StatusOr<std::string> plugin = procpool::FindRunfile("words/libwords.so");
  EXPECT_TRUE(plugin.ok()) << plugin.status();
  procpool::PoolOptions options;
  options.max_workers = 2;
  options.plugins = {*plugin};
  absl::StatusOr<procpool::ProcessPool> pool = procpool::ProcessPool::Create(options);
  EXPECT_TRUE(pool.ok()) << pool.status();
  return *std::move(pool);
}

TEST(RunfilesTest, FindsTheWorkerOfTheExternalProcpoolRepository) {
  absl::StatusOr<std::string> worker = procpool::DefaultWorkerPath();
  ASSERT_TRUE(worker.ok()) << worker.status();
  EXPECT_THAT(*worker, HasSubstr("/procpool/pool/procpool_worker"));
}

TEST(RunfilesTest, FindsThisWorkspacesPluginByItsPath) {
  absl::StatusOr<std::string> plugin = procpool::FindRunfile("words/libwords.so");
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  EXPECT_THAT(*plugin, HasSubstr("/consumer/words/libwords.so"));
}

TEST(RunfilesTest, AcceptsTheRepositoryFormAndWhatRootpathAndExecpathPrint) {
  for (const char* path : {"consumer/words/libwords.so", "procpool/pool/procpool_worker",
                           "../procpool/pool/procpool_worker",
                           "external/procpool/pool/procpool_worker"}) {
    absl::StatusOr<std::string> found = procpool::FindRunfile(path);
    EXPECT_TRUE(found.ok()) << path << ": " << found.status();
  }
}

TEST(RunfilesTest, AMissingFileIsNotFound) {
  EXPECT_EQ(procpool::FindRunfile("words/libnothing.so").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(WordsPoolTest, MapGivesWhatTheFunctionGivesInProcess) {
  procpool::ProcessPool pool = MakePool();
  auto count_words = pool.Task(words::kCountWords);
  ASSERT_TRUE(count_words.ok()) << count_words.status();
  std::vector<std::string> lines = {"It was the best of times,", "", "portable process pool"};
  std::vector<words::LineStats> got;
  for (const words::LineStats& s : pool.Map(*count_words, lines)) got.push_back(s);
  ASSERT_EQ(got.size(), lines.size());
  for (size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(got[i], words::CountWords(lines[i]));
}

TEST(WordsPoolTest, ATaskExceptionArrivesAsUnknownWithItsType) {
  procpool::ProcessPool pool = MakePool();
  procpool::Future<int64_t> f = pool.Submit(words::kParseCount, std::string("forty-two"));
  absl::StatusOr<int64_t> r = f.Result();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnknown);
  std::optional<procpool::TaskError> e = f.Exception();
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->exception_type(), "std::invalid_argument");
}

TEST(WordsPoolTest, AWrongSignatureIsRefusedAtLookup) {
  procpool::ProcessPool pool = MakePool();
  EXPECT_EQ(pool.Task<int(std::string)>("count_words").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool.Task<int(std::string)>("no_such_task").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(WordsPoolTest, ACrashFailsOnlyItsTask) {
  procpool::ProcessPool pool = MakePool();
  auto acronym = pool.Task(words::kAcronym);
  ASSERT_TRUE(acronym.ok()) << acronym.status();
  std::vector<std::string> lines = {"portable process pool", "---", "map reduce"};
  std::vector<absl::StatusOr<std::string>> got;
  for (absl::StatusOr<std::string> a : pool.TryMap(*acronym, lines)) got.push_back(a);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].value_or(""), "PPP");
  EXPECT_EQ(got[1].status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(got[2].value_or(""), "MR");
}

}  // namespace
