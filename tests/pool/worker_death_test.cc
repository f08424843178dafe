// A worker process that dies (SIGSEGV, SIGABRT, exit(3), an external
// SIGKILL) fails only the task it was running, with kAborted and a message
// naming the signal or exit code, the task and its input index; the tasks
// queued behind it still run, and the pool replaces the worker and goes on.
// With WorkerDeathPolicy::kBreakPool the pool breaks instead.

#include <signal.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pool/pool.h"
#include "tests/testing/pool_fixture.h"

namespace procpool {
namespace {

using ::procpool::testing::kWait;
using ::procpool::testing::PoolTest;
using ::procpool::testing::StatusWithin;
using ::procpool::testing::TempPath;
using ::procpool::testing::TestPoolOptions;
using ::procpool::testing::WaitForAnnouncedPid;
using ::procpool::testing::WaitUntil;
using ::testing::HasSubstr;

class WorkerDeathTest : public PoolTest {
 protected:
  // The future failed because its worker died: kAborted, and a message
  // naming `how` (signal or exit code), the task and "input #<index>". The
  // message content is the behaviour under test here.
  static void ExpectWorkerDeath(const Future<int>& f, const std::string& task,
                                const std::string& how) {
    absl::Status s = StatusWithin(f);
    EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
    const std::string message(s.message());
    EXPECT_THAT(message, HasSubstr(how));
    EXPECT_THAT(message, HasSubstr(absl::StrCat("'", task, "'")));
    EXPECT_THAT(message, HasSubstr(absl::StrCat("input #", f.index())));
  }

  // The pool has `n` live workers again (bounded wait), and answers.
  void ExpectServing(size_t n = 2) {
    EXPECT_TRUE(WaitUntil([&] { return pool().WorkerPids().size() == n; }))
        << "workers: " << pool().WorkerPids().size();
    EXPECT_EQ(pool().Submit(Task(math::kAdd), 20, 22).Get(kWait), 42);
  }
};

// ---- Each kind of death ----

TEST_F(WorkerDeathTest, SegfaultFailsItsTaskWithAbortedNamingSigsegv) {
  ExpectWorkerDeath(pool().Submit(Task(faults::kSegfault), 1), "segfault",
                    "SIGSEGV");
}

TEST_F(WorkerDeathTest, AbortFailsItsTaskWithAbortedNamingSigabrt) {
  ExpectWorkerDeath(pool().Submit(Task(faults::kAbort), 1), "abort", "SIGABRT");
}

TEST_F(WorkerDeathTest, ExitFailsItsTaskWithAbortedNamingTheExitCode) {
  ExpectWorkerDeath(pool().Submit(Task(faults::kExit), 3), "exit",
                    "exited with code 3");
}

TEST_F(WorkerDeathTest,
       ExternalSigkillFailsTheRunningTaskWithAbortedNamingSigkill) {
  const std::string announce = TempPath("victim");
  Future<int> f = pool().Submit(Task(probe::kAnnounceAndHang), announce);
  std::optional<int> pid = WaitForAnnouncedPid(announce);
  ASSERT_TRUE(pid.has_value());
  std::vector<int> pids = pool().WorkerPids();
  ASSERT_NE(std::find(pids.begin(), pids.end(), *pid), pids.end());
  ASSERT_EQ(::kill(*pid, SIGKILL), 0);
  ExpectWorkerDeath(f, "announce_and_hang", "SIGKILL");
}

TEST_F(WorkerDeathTest, CrashWithCallsUnreadInItsSocketStillNamesTheSignal) {
  // The pool pipelines calls: the add below reaches the worker's socket while
  // the task before it sleeps, and is still unread when the worker dies.
  // The error must name the signal all the same.
  StartPool(TestPoolOptions(/*workers=*/1));
  const std::string announce = TempPath("crasher");
  Future<int> crash =
      pool().Submit(Task(probe::kAnnounceAndSegfaultAfterMs), announce, 500);
  ASSERT_TRUE(WaitForAnnouncedPid(announce).has_value());
  Future<int> behind = pool().Submit(Task(math::kAdd), 1, 2);
  ExpectWorkerDeath(crash, "announce_and_segfault_after_ms", "SIGSEGV");
  EXPECT_EQ(behind.Get(kWait), 3);
}

// ---- The others succeed ----

TEST_F(WorkerDeathTest, OnlyTheCrashingTaskFails) {
  std::vector<Future<int>> adds;
  for (int i = 0; i < 15; ++i)
    adds.push_back(pool().Submit(Task(math::kAdd), i, 1));
  Future<int> crash = pool().Submit(Task(faults::kSegfault), 0);
  for (int i = 15; i < 30; ++i)
    adds.push_back(pool().Submit(Task(math::kAdd), i, 1));
  ExpectWorkerDeath(crash, "segfault", "SIGSEGV");
  for (int i = 0; i < 30; ++i) {
    absl::StatusOr<int> r = adds[i].Result(kWait);
    ASSERT_TRUE(r.ok()) << "add #" << i << ": " << r.status();
    EXPECT_EQ(*r, i + 1);
  }
}

TEST_F(WorkerDeathTest, TasksQueuedBehindACrashOnTheSameWorkerStillRun) {
  StartPool(TestPoolOptions(/*workers=*/1));
  Future<int> crash = pool().Submit(Task(faults::kAbort), 0);
  std::vector<Future<int>> behind;
  for (int i = 0; i < 20; ++i)
    behind.push_back(pool().Submit(Task(math::kAdd), i, i));
  ExpectWorkerDeath(crash, "abort", "SIGABRT");
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<int> r = behind[i].Result(kWait);
    ASSERT_TRUE(r.ok()) << "add #" << i << ": " << r.status();
    EXPECT_EQ(*r, 2 * i);
  }
}

TEST_F(WorkerDeathTest, TasksQueuedBehindAKilledTaskStillRun) {
  StartPool(TestPoolOptions(/*workers=*/1));
  const std::string announce = TempPath("victim");
  Future<int> victim = pool().Submit(Task(probe::kAnnounceAndHang), announce);
  std::vector<Future<int>> behind;
  for (int i = 0; i < 10; ++i)
    behind.push_back(pool().Submit(Task(math::kAdd), i, 1));
  std::optional<int> pid = WaitForAnnouncedPid(announce);
  ASSERT_TRUE(pid.has_value());
  ASSERT_EQ(::kill(*pid, SIGKILL), 0);
  ExpectWorkerDeath(victim, "announce_and_hang", "SIGKILL");
  for (int i = 0; i < 10; ++i) EXPECT_EQ(behind[i].Get(kWait), i + 1);
}

// A dying worker's socket reads EOF a moment before the worker can be
// reaped (here 20 ms: the task closes the socket, sleeps, then dies). Its
// slot is free only once it exited: its task fails first, and the
// replacement starts after, not in between, however long the exit takes
// (up to the scheduler's bound for a hung-up worker, after which it is
// killed).
TEST_F(WorkerDeathTest, ADyingWorkersTaskFailsBeforeItsReplacementStarts) {
  StartPool(TestPoolOptions(/*workers=*/1));
  for (int round = 0; round < 5; ++round) {
    Future<int> victim = pool().Submit(Task(probe::kCloseSocketSleepThenDie), 20'000);
    absl::Mutex mu;
    std::optional<std::vector<int>> seen;  // WorkerPids() as the task failed
    victim.AddDoneCallback([&](const Future<int>&) {
      std::vector<int> pids = pool().WorkerPids();
      absl::MutexLock l(&mu);
      seen = std::move(pids);
    });
    // Not Result(): a waiting caller may read the socket itself.
    ASSERT_TRUE(WaitUntil([&] {
      absl::MutexLock l(&mu);
      return seen.has_value();
    }));
    EXPECT_EQ(victim.status().code(), absl::StatusCode::kAborted) << victim.status();
    absl::MutexLock l(&mu);
    EXPECT_THAT(*seen, ::testing::IsEmpty()) << "round " << round;
  }
}

TEST_F(WorkerDeathTest, CrashInAMapNamesTheItemsInputIndex) {
  std::vector<int> xs = {0, 1, 2, 3, 4};
  std::vector<int> crash_on(xs.size(), 2);
  std::vector<absl::Status> statuses;
  for (const absl::StatusOr<int>& r :
       pool().TryMap(Task(faults::kCrashOn), xs, crash_on)) {
    statuses.push_back(r.status());
  }
  ASSERT_EQ(statuses.size(), 5u);
  EXPECT_EQ(statuses[2].code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(statuses[2].message()), HasSubstr("input #2"));
  EXPECT_THAT(std::string(statuses[2].message()), HasSubstr("SIGSEGV"));
}

// ---- The pool goes on ----

TEST_F(WorkerDeathTest, PoolReplacesTheDeadWorkerAndKeepsServing) {
  std::vector<int> before = pool().WorkerPids();
  ExpectWorkerDeath(pool().Submit(Task(faults::kSegfault), 0), "segfault",
                    "SIGSEGV");
  ExpectServing();
  std::vector<int> after = pool().WorkerPids();
  EXPECT_NE(after, before) << "no worker was replaced";
}

TEST_F(WorkerDeathTest, PoolKeepsServingAfterAnExternalSigkill) {
  const std::string announce = TempPath("victim");
  Future<int> f = pool().Submit(Task(probe::kAnnounceAndHang), announce);
  std::optional<int> pid = WaitForAnnouncedPid(announce);
  ASSERT_TRUE(pid.has_value());
  ASSERT_EQ(::kill(*pid, SIGKILL), 0);
  ASSERT_EQ(StatusWithin(f).code(), absl::StatusCode::kAborted);
  ExpectServing();
  std::vector<int> pids = pool().WorkerPids();
  EXPECT_EQ(std::find(pids.begin(), pids.end(), *pid), pids.end());
}

TEST_F(WorkerDeathTest, KillingAnIdleWorkerFailsNothingAndItIsReplaced) {
  std::vector<int> pids = pool().WorkerPids();
  ASSERT_EQ(pids.size(), 2u);
  ASSERT_EQ(::kill(pids[0], SIGKILL), 0);
  EXPECT_TRUE(WaitUntil([&] {
    std::vector<int> now = pool().WorkerPids();
    return now.size() == 2 &&
           std::find(now.begin(), now.end(), pids[0]) == now.end();
  }));
  std::vector<Future<int>> adds;
  for (int i = 0; i < 10; ++i)
    adds.push_back(pool().Submit(Task(math::kAdd), i, 1));
  for (int i = 0; i < 10; ++i) EXPECT_EQ(adds[i].Get(kWait), i + 1);
}

TEST_F(WorkerDeathTest, ManyCrashesInARowDoNotBreakThePool) {
  for (int i = 0; i < 8; ++i) {
    ASSERT_EQ(StatusWithin(pool().Submit(Task(faults::kSegfault), i)).code(),
              absl::StatusCode::kAborted)
        << "crash #" << i;
  }
  ExpectServing();
}

TEST_F(WorkerDeathTest, SimultaneousCrashesOnEveryWorkerAreEachReported) {
  std::vector<Future<int>> crashes;
  for (int i = 0; i < 4; ++i)
    crashes.push_back(pool().Submit(Task(faults::kExit), 3));
  for (auto& f : crashes) ExpectWorkerDeath(f, "exit", "exited with code 3");
  ExpectServing();
}

TEST_F(WorkerDeathTest, AThrowingTaskIsNotAWorkerDeath) {
  std::vector<int> before = pool().WorkerPids();
  EXPECT_EQ(StatusWithin(pool().Submit(Task(faults::kThrow), "x")).code(),
            absl::StatusCode::kUnknown);
  EXPECT_EQ(pool().WorkerPids(), before);
}

// ---- WorkerDeathPolicy::kBreakPool ----

class BreakPoolTest : public WorkerDeathTest {
 protected:
  void SetUp() override {
    PoolOptions options = TestPoolOptions();
    options.on_worker_death = WorkerDeathPolicy::kBreakPool;
    StartPool(options);
  }
};

TEST_F(BreakPoolTest, ACrashFailsEveryPendingFutureWithAborted) {
  Future<int> crash = pool().Submit(Task(faults::kSegfault), 0);
  std::vector<Future<int>> pending;
  for (int i = 0; i < 4; ++i)
    pending.push_back(pool().Submit(Task(faults::kHang), i));
  for (int i = 0; i < 4; ++i)
    pending.push_back(pool().Submit(Task(math::kAdd), i, i));
  EXPECT_EQ(StatusWithin(crash).code(), absl::StatusCode::kAborted);
  int aborted = 0;
  for (auto& f : pending) {
    absl::Status s = StatusWithin(f);
    // Adds that finished before the crash are fine; everything else failed.
    if (s.ok()) continue;
    EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
    ++aborted;
  }
  EXPECT_GE(aborted, 4) << "the hanging tasks must have failed";
}

TEST_F(BreakPoolTest, SubmitAfterTheBreakFailsWithAborted) {
  ASSERT_EQ(StatusWithin(pool().Submit(Task(faults::kSegfault), 0)).code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(StatusWithin(pool().Submit(Task(math::kAdd), 1, 2)).code(),
            absl::StatusCode::kAborted);
}

TEST_F(BreakPoolTest, ABrokenPoolStopsItsWorkers) {
  ASSERT_EQ(StatusWithin(pool().Submit(Task(faults::kSegfault), 0)).code(),
            absl::StatusCode::kAborted);
  EXPECT_TRUE(WaitUntil([&] { return pool().WorkerPids().empty(); }));
}

TEST_F(BreakPoolTest, ATaskExceptionDoesNotBreakThePool) {
  EXPECT_EQ(StatusWithin(pool().Submit(Task(faults::kThrow), "x")).code(),
            absl::StatusCode::kUnknown);
  EXPECT_EQ(pool().Submit(Task(math::kAdd), 1, 2).Get(kWait), 3);
}

}  // namespace
}  // namespace procpool
