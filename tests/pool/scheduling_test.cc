// How the pool spreads tasks over its workers.

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "pool/pool.h"
#include "tests/testing/pool_fixture.h"

namespace procpool {
namespace {

using ::procpool::testing::PoolTest;
using ::procpool::testing::TempPath;
using ::procpool::testing::WaitForAnnouncedPid;

using SchedulingTest = PoolTest;

TEST_F(SchedulingTest, SimultaneousLongTasksRunOnDifferentWorkers) {
  std::vector<Future<int>> futures;
  std::vector<std::string> paths;
  for (int i = 0; i < 2; ++i) paths.push_back(TempPath("long"));
  for (const std::string& p : paths) {
    futures.push_back(pool().Submit(Task(probe::kAnnounceAndHang), p));
  }
  std::vector<int> pids;
  for (const std::string& p : paths) {
    std::optional<int> pid = WaitForAnnouncedPid(p, absl::Seconds(5));
    ASSERT_TRUE(pid.has_value()) << "a long task never started";
    pids.push_back(*pid);
  }
  EXPECT_NE(pids[0], pids[1]);
}

TEST_F(SchedulingTest, AQuickTaskIsNotSentBehindALongOneWhileAWorkerIsIdle) {
  // One worker is busy with a task that does not end; the other is idle.
  // A quick task submitted now must go to the idle worker, not queue behind
  // the long task. Which worker the pool tries first varies from pool to
  // pool, so the scenario is repeated on fresh pools.
  for (int round = 0; round < 30; ++round) {
    StartPool(testing::TestPoolOptions(/*workers=*/2));
    const std::string announce = TempPath("long");
    Future<int> hung = pool().Submit(Task(probe::kAnnounceAndHang), announce);
    ASSERT_TRUE(WaitForAnnouncedPid(announce).has_value());
    for (int i = 0; i < 3; ++i) {
      absl::StatusOr<int> r =
          pool().Submit(Task(math::kAdd), i, 1).Result(absl::Seconds(2));
      ASSERT_TRUE(r.ok()) << "round " << round << ", quick task #" << i
                          << " is stuck behind the long task: " << r.status();
      EXPECT_EQ(*r, i + 1);
    }
    EXPECT_FALSE(hung.Done());
  }
}

TEST_F(SchedulingTest, AQuickTaskWaitsForAFreeWorkerRatherThanQueueBehindAHungOne) {
  // Both workers are busy: one with a task that never ends, one with a
  // 300 ms task. Tiny tasks ran before, so the pool would happily queue
  // several tasks per worker; it must still not queue the quick task behind
  // the hung one (found by crash_recovery_bench: a task sent to a worker
  // that ran a long task while its replacement partner was still starting).
  for (int round = 0; round < 6; ++round) {
    StartPool(testing::TestPoolOptions(/*workers=*/2));
    std::vector<int> ones(20000, 1);
    for (int r : pool().Map(Task(math::kNoop), ones)) ASSERT_EQ(r, 1);
    const std::string announce = TempPath("hung");
    Future<int> hung = pool().Submit(Task(probe::kAnnounceAndHang), announce);
    ASSERT_TRUE(WaitForAnnouncedPid(announce).has_value());
    Future<int> slow = pool().Submit(Task(faults::kSleepMs), 300);
    absl::SleepFor(absl::Milliseconds(20));  // both are long tasks by now
    absl::StatusOr<int> r = pool().Submit(Task(math::kAdd), 2, 3).Result(absl::Seconds(5));
    ASSERT_TRUE(r.ok()) << "round " << round
                        << ": the quick task was queued behind the hung one: " << r.status();
    EXPECT_EQ(*r, 5);
    EXPECT_TRUE(slow.Done());
    EXPECT_FALSE(hung.Done());
  }
}

}  // namespace
}  // namespace procpool
