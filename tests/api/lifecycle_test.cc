// Worker lifecycle: initializer, max_tasks_per_child, the resident-memory
// limit, and the statistics that record them.

#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "plugins/faults/faults.h"
#include "plugins/math/math.h"
#include "pool/pool.h"
#include "tests/api/test_env.h"

namespace procpool {
namespace {

using ::procpool::testing::Checked;
using ::procpool::testing::Eventually;
using ::procpool::testing::MakePool;
using ::procpool::testing::Options;

TEST(LifecycleTest, InitializerRunsOnceInEachWorkerBeforeWork) {
  PoolOptions opts = Options(2);
  opts.initializer = Initializer::Of(faults::kSetMarker, "ready");
  ProcessPool pool = MakePool(opts);
  auto get = Checked(pool, faults::kGetMarker);
  std::vector<int> xs(20, 0);
  for (const std::string& m : pool.Map(get, xs)) EXPECT_EQ(m, "ready");
}

TEST(LifecycleTest, InitializerFailureIsReportedByCreate) {
  PoolOptions opts = Options(2);
  opts.initializer = Initializer::Of(faults::kSetMarker, "fail");
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(opts);
  ASSERT_FALSE(pool.ok());
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kUnknown);
  EXPECT_TRUE(absl::StrContains(pool.status().message(), "set_marker"))
      << pool.status();
  EXPECT_TRUE(absl::StrContains(pool.status().message(), "initializer refused"))
      << pool.status();
}

TEST(LifecycleTest, UnknownInitializerIsNotFound) {
  PoolOptions opts = Options(1);
  opts.initializer.task = "no_such_task";
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(opts);
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kNotFound) << pool.status();
}

TEST(LifecycleTest, InitializerWithWrongSignatureIsInvalidArgument) {
  PoolOptions opts = Options(1);
  opts.initializer = Initializer::Of(TaskRef<int(int)>("set_marker"), 3);
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(opts);
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kInvalidArgument)
      << pool.status();
}

TEST(LifecycleTest, MaxTasksPerChildRecyclesWorkers) {
  PoolOptions opts = Options(1);
  opts.max_tasks_per_child = 3;
  ProcessPool pool = MakePool(opts);
  auto pid = Checked(pool, faults::kPid);
  std::vector<int> pids;
  for (int i = 0; i < 9; ++i) pids.push_back(pool.Submit(pid, i).Get(absl::Seconds(10)));
  // Three tasks per worker process, then a new one.
  for (int i = 0; i < 9; ++i) EXPECT_EQ(pids[i], pids[i - i % 3]) << i;
  EXPECT_EQ(std::set<int>(pids.begin(), pids.end()).size(), 3u);
  ASSERT_TRUE(Eventually([&] { return pool.Stats().workers[0].restarts >= 2; }));
  PoolStats s = pool.Stats();
  ASSERT_FALSE(s.workers[0].restart_reasons.empty());
  EXPECT_TRUE(absl::StrContains(s.workers[0].restart_reasons[0], "max_tasks_per_child"))
      << s.workers[0].restart_reasons[0];
}

TEST(LifecycleTest, MaxTasksPerChildLosesNoTaskInABatchedMap) {
  PoolOptions opts = Options(2);
  opts.max_tasks_per_child = 50;
  ProcessPool pool = MakePool(opts);
  auto add = Checked(pool, math::kAdd);
  int i = 0;
  for (int r : pool.Map(add, std::views::iota(0, 2000), std::views::iota(0, 2000))) {
    ASSERT_EQ(r, 2 * i);
    ++i;
  }
  EXPECT_EQ(i, 2000);
}

TEST(LifecycleTest, MemoryLimitRecyclesAWorkerThatGrows) {
  PoolOptions opts = Options(1);
  opts.max_worker_rss_bytes = uint64_t{64} << 20;
  ProcessPool pool = MakePool(opts);
  auto hog = Checked(pool, faults::kHog);
  auto pid = Checked(pool, faults::kPid);
  int first = pool.Submit(pid, 0).Get(absl::Seconds(10));
  // Holding 100 MiB crosses the limit: the worker retires after the task.
  // (Touching 100 MiB takes seconds under TSan on a loaded machine.)
  EXPECT_EQ(pool.Submit(hog, 100).Get(absl::Seconds(120)), 100);
  int second = pool.Submit(pid, 0).Get(absl::Seconds(10));
  EXPECT_NE(first, second);
  ASSERT_TRUE(Eventually([&] { return pool.Stats().workers[0].restarts == 1; }));
  PoolStats s = pool.Stats();
  EXPECT_TRUE(absl::StrContains(s.workers[0].restart_reasons[0], "resident memory"))
      << s.workers[0].restart_reasons[0];
  EXPECT_GE(s.workers[0].peak_rss_bytes, uint64_t{100} << 20);
}

TEST(LifecycleTest, StatsCountTasksBusyTimeAndOutcomes) {
  ProcessPool pool = MakePool(Options(2));
  auto sleep = Checked(pool, faults::kSleepMs);
  auto check = Checked(pool, faults::kCheckNonNegative);
  std::vector<Future<int>> fs;
  for (int i = 0; i < 6; ++i) fs.push_back(pool.Submit(sleep, 20));
  fs.push_back(pool.Submit(check, -1));
  for (auto& f : fs) ASSERT_TRUE(f.WaitFor(absl::Seconds(10)));
  PoolStats s = pool.Stats();
  ASSERT_EQ(s.workers.size(), 2u);
  uint64_t done = 0;
  absl::Duration busy;
  for (const WorkerStats& w : s.workers) {
    EXPECT_GT(w.pid, 0);
    EXPECT_GT(w.peak_rss_bytes, 0u);
    done += w.tasks_done;
    busy += w.busy;
  }
  EXPECT_EQ(done, 7u);
  EXPECT_GE(busy, absl::Milliseconds(6 * 20));
  EXPECT_EQ(s.submitted, 7u);
  EXPECT_EQ(s.succeeded, 6u);
  EXPECT_EQ(s.failed, 1u);
  EXPECT_EQ(s.pending, 0u);
  EXPECT_EQ(s.in_flight, 0u);
}

TEST(LifecycleTest, StatsRecordWhyAWorkerWasRestarted) {
  ProcessPool pool = MakePool(Options(1));
  auto segv = Checked(pool, faults::kSegfault);
  EXPECT_EQ(pool.Submit(segv, 1).Result(absl::Seconds(10)).status().code(),
            absl::StatusCode::kAborted);
  ASSERT_TRUE(Eventually([&] { return pool.Stats().workers[0].restarts == 1; }));
  EXPECT_TRUE(absl::StrContains(pool.Stats().workers[0].restart_reasons[0], "SIGSEGV"));
}

}  // namespace
}  // namespace procpool
