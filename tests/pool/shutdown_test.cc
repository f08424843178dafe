// Shutdown() with and without waiting or cancelling, the destructor (which
// drains) and Terminate() with work still running, submissions after
// shutdown, and child processes left behind (none, not even zombies).

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "pool/pool.h"
#include "tests/testing/pool_fixture.h"

namespace procpool {
namespace {

using ::procpool::testing::ChildProcesses;
using ::procpool::testing::ChildProcessInfo;
using ::procpool::testing::kWait;
using ::procpool::testing::PoolTest;
using ::procpool::testing::StatusWithin;
using ::procpool::testing::TempPath;
using ::procpool::testing::WaitForAnnouncedPid;

using ShutdownTest = PoolTest;

std::string Describe(const std::vector<ChildProcessInfo>& children) {
  std::string out;
  for (const auto& c : children) {
    out += std::to_string(c.pid) + "(" + c.state + ") ";
  }
  return out;
}

// ---- Shutdown(wait = true) ----

TEST_F(ShutdownTest, ShutdownWithWaitDrainsPendingWork) {
  std::vector<Future<int>> futures;
  for (int i = 0; i < 20; ++i)
    futures.push_back(pool().Submit(Task(faults::kSleepMs), 10));
  pool().Shutdown(/*wait=*/true);
  for (size_t i = 0; i < futures.size(); ++i) {
    ASSERT_TRUE(futures[i].Done())
        << "#" << i << " still pending after Shutdown(wait)";
    EXPECT_TRUE(futures[i].status().ok()) << futures[i].status();
  }
}

TEST_F(ShutdownTest, ShutdownWithWaitStopsAndReapsTheWorkers) {
  EXPECT_EQ(pool().Submit(Task(math::kAdd), 1, 1).Get(kWait), 2);
  pool().Shutdown(/*wait=*/true);
  EXPECT_TRUE(pool().WorkerPids().empty());
  std::vector<ChildProcessInfo> children = ChildProcesses();
  EXPECT_TRUE(children.empty()) << Describe(children);
}

TEST_F(ShutdownTest, ShutdownWithWaitAndCancelPendingFinishesRunningTasksOnly) {
  std::vector<Future<int>> futures;
  for (int i = 0; i < 40; ++i)
    futures.push_back(pool().Submit(Task(faults::kSleepMs), 50));
  pool().Shutdown(/*wait=*/true, /*cancel_pending=*/true);
  int ok = 0, cancelled = 0;
  for (auto& f : futures) {
    ASSERT_TRUE(f.Done());
    if (f.status().ok()) {
      ++ok;
    } else {
      EXPECT_EQ(f.status().code(), absl::StatusCode::kCancelled) << f.status();
      ++cancelled;
    }
  }
  EXPECT_GT(cancelled, 0);
  EXPECT_EQ(ok + cancelled, 40);
}

// ---- Shutdown(wait = false) ----

TEST_F(ShutdownTest,
       ShutdownWithoutWaitReturnsPromptlyAndTheWorkStillFinishes) {
  // About 3 s of queued work on 2 workers.
  std::vector<Future<int>> futures;
  for (int i = 0; i < 60; ++i)
    futures.push_back(pool().Submit(Task(faults::kSleepMs), 100));
  absl::Time start = absl::Now();
  pool().Shutdown(/*wait=*/false);
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  for (auto& f : futures) EXPECT_EQ(f.Get(kWait), 100);
}

TEST_F(ShutdownTest,
       ShutdownCancellingPendingReturnsPromptlyAndEveryFutureResolves) {
  std::vector<Future<int>> futures;
  for (int i = 0; i < 300; ++i)
    futures.push_back(pool().Submit(Task(faults::kSleepMs), 50));
  absl::Time start = absl::Now();
  pool().Shutdown(/*wait=*/false, /*cancel_pending=*/true);
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  int ok = 0, cancelled = 0;
  for (auto& f : futures) {
    absl::Status s = StatusWithin(f);
    if (s.ok()) {
      ++ok;
    } else {
      ASSERT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
      ++cancelled;
    }
  }
  EXPECT_EQ(ok + cancelled, 300);
  EXPECT_GT(cancelled, 250) << "most of the queue should have been cancelled";
}

TEST_F(ShutdownTest, ShutdownTwiceIsHarmless) {
  pool().Shutdown(/*wait=*/true);
  pool().Shutdown(/*wait=*/true);
  pool().Shutdown(/*wait=*/false, /*cancel_pending=*/true);
  EXPECT_TRUE(pool().WorkerPids().empty());
}

// ---- After Shutdown ----

TEST_F(ShutdownTest, SubmitAfterShutdownReturnsFailedPrecondition) {
  pool().Shutdown();
  Future<int> f = pool().Submit(Task(math::kAdd), 1, 2);
  EXPECT_TRUE(f.Done());
  EXPECT_EQ(StatusWithin(f).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(ShutdownTest, SubmitAfterShutdownWithoutWaitReturnsFailedPrecondition) {
  pool().Shutdown(/*wait=*/false);
  EXPECT_EQ(StatusWithin(pool().Submit(Task(math::kAdd), 1, 2)).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ShutdownTest, TryMapAfterShutdownYieldsFailedPrecondition) {
  pool().Shutdown();
  std::vector<int> xs = {1, 2};
  std::vector<absl::StatusCode> codes;
  for (const absl::StatusOr<int>& r : pool().TryMap(Task(math::kNoop), xs)) {
    codes.push_back(r.status().code());
  }
  EXPECT_EQ(codes, (std::vector<absl::StatusCode>{
                       absl::StatusCode::kFailedPrecondition,
                       absl::StatusCode::kFailedPrecondition}));
}

TEST_F(ShutdownTest, TaskLookupStillWorksAfterShutdown) {
  pool().Shutdown();
  EXPECT_TRUE(pool().Task(math::kAdd).ok());
}

// ---- The destructor and Terminate ----

TEST_F(ShutdownTest, DestroyingAPoolDrainsItsQueuedAndRunningTasks) {
  std::vector<Future<int>> futures;
  for (int i = 0; i < 10; ++i)
    futures.push_back(pool().Submit(Task(faults::kSleepMs), 20));
  DestroyPool();
  for (auto& f : futures) {
    ASSERT_TRUE(f.Done());
    EXPECT_EQ(f.status(), absl::OkStatus());
  }
}

TEST_F(ShutdownTest,
       TerminatingAPoolWithAHungTaskReturnsAndTheFutureResolvesCancelled) {
  const std::string announce = TempPath("hung");
  Future<int> hung = pool().Submit(Task(probe::kAnnounceAndHang), announce);
  ASSERT_TRUE(WaitForAnnouncedPid(announce).has_value());
  absl::Time start = absl::Now();
  TerminatePool();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  ASSERT_TRUE(hung.Done());
  EXPECT_EQ(hung.status().code(), absl::StatusCode::kCancelled);
}

TEST_F(ShutdownTest, TerminatingAPoolCancelsItsQueuedTasks) {
  std::vector<Future<int>> futures;
  for (int i = 0; i < 8; ++i)
    futures.push_back(pool().Submit(Task(faults::kHang), i));
  for (int i = 0; i < 8; ++i)
    futures.push_back(pool().Submit(Task(math::kAdd), i, i));
  TerminatePool();
  for (auto& f : futures) {
    absl::Status s = StatusWithin(f);
    if (!s.ok()) {
      EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
    }
  }
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(futures[i].status().code(), absl::StatusCode::kCancelled);
  }
}

TEST_F(ShutdownTest, TerminatingAPoolAfterShutdownWithoutWaitIsPrompt) {
  std::vector<Future<int>> futures;
  for (int i = 0; i < 40; ++i)
    futures.push_back(pool().Submit(Task(faults::kSleepMs), 200));
  pool().Shutdown(/*wait=*/false);
  absl::Time start = absl::Now();
  TerminatePool();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  for (auto& f : futures) {
    absl::Status s = StatusWithin(f);
    if (!s.ok()) {
      EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
    }
  }
}

TEST_F(ShutdownTest, SubmitAfterTerminateReturnsFailedPrecondition) {
  pool().Terminate();
  EXPECT_EQ(StatusWithin(pool().Submit(Task(math::kAdd), 1, 2)).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ShutdownTest, DestroyingAnIdlePoolLeavesNoChildProcess) {
  EXPECT_EQ(pool().Submit(Task(math::kAdd), 1, 1).Get(kWait), 2);
  DestroyPool();
  std::vector<ChildProcessInfo> children = ChildProcesses();
  EXPECT_TRUE(children.empty()) << Describe(children);
}

TEST_F(ShutdownTest, NoZombieIsLeftAfterCrashesKillsAndTermination) {
  // Crashed and killed workers, replacements, a hung task at the end.
  ASSERT_EQ(StatusWithin(pool().Submit(Task(faults::kSegfault), 0)).code(),
            absl::StatusCode::kAborted);
  ASSERT_EQ(StatusWithin(pool().Submit(Task(faults::kExit), 3)).code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(pool().Submit(Task(math::kAdd), 1, 1).Get(kWait), 2);
  const std::string announce = TempPath("hung");
  Future<int> hung = pool().Submit(Task(probe::kAnnounceAndHang), announce);
  ASSERT_TRUE(WaitForAnnouncedPid(announce).has_value());
  TerminatePool();
  std::vector<ChildProcessInfo> children = ChildProcesses();
  EXPECT_TRUE(children.empty()) << Describe(children);
  EXPECT_EQ(StatusWithin(hung).code(), absl::StatusCode::kCancelled);
}

TEST_F(ShutdownTest, NoZombieIsLeftWhileThePoolRunsOnAfterACrash) {
  ASSERT_EQ(StatusWithin(pool().Submit(Task(faults::kAbort), 0)).code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(pool().Submit(Task(math::kAdd), 1, 1).Get(kWait), 2);
  for (const ChildProcessInfo& c : ChildProcesses()) {
    EXPECT_NE(c.state, 'Z') << "zombie child " << c.pid;
  }
}

// ---- Moving ----

TEST_F(ShutdownTest, AMovedPoolKeepsWorkingAndTheMovedFromOneDestructsQuietly) {
  ProcessPool moved = std::move(pool());
  EXPECT_EQ(moved.Submit(testing::MustTask(moved, math::kAdd), 2, 3).Get(kWait),
            5);
  DestroyPool();  // the moved-from pool
  EXPECT_EQ(moved.Submit(testing::MustTask(moved, math::kAdd), 4, 5).Get(kWait),
            9);
}

}  // namespace
}  // namespace procpool
