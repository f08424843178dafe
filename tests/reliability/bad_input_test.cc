// Bad input named in the reliability issue that other suites do not cover:
// duplicate task names within one plugin and across two, and a shutdown
// with 10,000 tasks pending.

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "plugins/faults/faults.h"
#include "pool/pool.h"
#include "tests/api/test_env.h"

namespace procpool {
namespace {

using ::procpool::testing::Checked;
using ::procpool::testing::MakePool;
using ::procpool::testing::Options;
using ::procpool::testing::Plugin;

TEST(BadInputTest, ATaskRegisteredTwiceInOnePluginIsAlreadyExistsNamingIt) {
  PoolOptions opts = Options(1);
  std::string dup = *FindRunfile("tests/testdata/libdup_within.so");
  opts.plugins = {dup};
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(opts);
  ASSERT_EQ(pool.status().code(), absl::StatusCode::kAlreadyExists) << pool.status();
  std::string m(pool.status().message());
  EXPECT_TRUE(absl::StrContains(m, "'twice'")) << m;
  EXPECT_TRUE(absl::StrContains(m, dup)) << m;
  EXPECT_TRUE(absl::StrContains(m, "same plugin")) << m;
}

TEST(BadInputTest, TheSameTaskNameInTwoPluginsIsAlreadyExistsNamingBoth) {
  PoolOptions opts = Options(1);
  std::string math = Plugin("math");
  std::string other = *FindRunfile("tests/testdata/libdup_across.so");
  opts.plugins = {math, other};
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(opts);
  ASSERT_EQ(pool.status().code(), absl::StatusCode::kAlreadyExists) << pool.status();
  std::string m(pool.status().message());
  EXPECT_TRUE(absl::StrContains(m, "'add'")) << m;
  EXPECT_TRUE(absl::StrContains(m, math)) << m;
  EXPECT_TRUE(absl::StrContains(m, other)) << m;
}

TEST(BadInputTest, ShutdownWithTenThousandPendingReturnsPromptlyAndAllResolve) {
  ProcessPool pool = MakePool(Options(2));
  auto sleep = Checked(pool, faults::kSleepMs);
  std::vector<Future<int>> futures;
  futures.reserve(10000);
  for (int i = 0; i < 10000; ++i) futures.push_back(pool.Submit(sleep, 20));
  absl::Time start = absl::Now();
  pool.Shutdown(/*wait=*/false, /*cancel_pending=*/true);
  absl::Duration took = absl::Now() - start;
  std::printf("Shutdown(false, true) with 10,000 pending: %.3f ms\n",
              absl::ToDoubleMilliseconds(took));
  EXPECT_LT(took, absl::Seconds(1));
  int ok = 0, cancelled = 0;
  for (auto& f : futures) {
    absl::StatusOr<int> r = f.Result(absl::Seconds(10));
    if (r.ok()) {
      ++ok;
    } else {
      ASSERT_EQ(r.status().code(), absl::StatusCode::kCancelled) << r.status();
      ++cancelled;
    }
  }
  EXPECT_EQ(ok + cancelled, 10000);
  // Tasks dispatched while the loop above ran finish; the rest of the queue
  // is cancelled (how many ran depends on the machine, not on the pool).
  EXPECT_GT(cancelled, 5000);
}

}  // namespace
}  // namespace procpool
