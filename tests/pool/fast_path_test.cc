// The serial fast path (issue 5): a lone task on an idle pool is sent to a
// worker from the submitting thread, and a thread waiting on it reads the
// worker's answer itself. Everything the I/O thread guarantees must still
// hold when a caller does the I/O: crash attribution and replacement,
// deadlines, cancellation, shutdown, stderr before the result, done-
// callbacks for tasks nobody waits on, and many callers at once.
//
// Which path a given call takes is a matter of timing (the fast path is
// skipped whenever the I/O thread holds its lock), so these tests assert
// outcomes, which must be the same either way; they use lone tasks on an
// idle pool, where the fast path is the usual one.

#include <signal.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pool/internal/sanitizers.h"
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

class FastPathTest : public PoolTest {
 protected:
  // Two live workers again, and a lone task answers.
  void ExpectServing() {
    EXPECT_TRUE(WaitUntil([&] { return pool().WorkerPids().size() == 2; }));
    EXPECT_EQ(pool().Submit(Task(math::kAdd), 20, 22).Get(kWait), 42);
  }
};

TEST_F(FastPathTest, SerialRoundTripsReturnTheirValues) {
  auto add = Task(math::kAdd);
  for (int i = 0; i < 500; ++i) {
    ASSERT_EQ(pool().Submit(add, i, 1).Get(kWait), i + 1);
  }
  PoolStats stats = pool().Stats();
  EXPECT_EQ(stats.succeeded, 500u);
  EXPECT_EQ(stats.in_flight, 0u);
  // On an idle pool the fast path is the usual one (it is skipped only
  // when the I/O thread happens to hold its lock at that moment). Under a
  // sanitizer on a loaded machine the I/O thread's turn after it resolved
  // a task can outlast the caller's wake-up nearly every time, so there
  // the path need only work.
  constexpr uint64_t kUsual =
      internal::kAddressSanitizer || internal::kThreadSanitizer ? 1 : 250;
  EXPECT_GE(stats.direct_calls, kUsual);
  EXPECT_GE(stats.caller_reads, kUsual);
  EXPECT_LE(stats.direct_calls, 500u);
  EXPECT_LE(stats.caller_reads, 500u);
}

TEST_F(FastPathTest, AMapsConsumerNeverReadsSocketsItself) {
  // A map's chunks go through the I/O thread, which keeps every worker
  // busy; a consumer polling sockets would only spend its CPU.
  auto add = Task(math::kAdd);
  std::vector<int> xs(5000), ys(5000);
  for (int i = 0; i < 5000; ++i) xs[i] = ys[i] = i;
  for (int chunksize : {0, 1, 7}) {
    MapOptions mo;
    mo.chunksize = chunksize;
    long long sum = 0;
    for (int r : pool().Map(mo, add, xs, ys)) sum += r;
    EXPECT_EQ(sum, 2LL * (4999LL * 5000 / 2)) << "chunksize " << chunksize;
  }
  PoolStats stats = pool().Stats();
  EXPECT_EQ(stats.direct_calls, 0u);
  EXPECT_EQ(stats.caller_reads, 0u);
}

TEST_F(FastPathTest, LoneGetOfACrashingTaskFailsWithTheCrashMessage) {
  auto segfault = Task(faults::kSegfault);
  for (int i = 0; i < 3; ++i) {
    Future<int> f = pool().Submit(segfault, 1);
    absl::Status s = StatusWithin(f);
    EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("SIGSEGV"));
    EXPECT_THAT(std::string(s.message()), HasSubstr("'segfault'"));
    ExpectServing();  // the I/O thread replaced the worker
  }
}

TEST_F(FastPathTest, LoneGetWhileTheWorkerIsKilledMidTaskFailsWithTheCrash) {
  const std::string path = TempPath("announce");
  // Dies on its own a few ms into the task, while the caller reads.
  Future<int> f =
      pool().Submit(Task(probe::kAnnounceAndSegfaultAfterMs), path, 5);
  absl::Status s = StatusWithin(f);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("SIGSEGV"));
  ExpectServing();

  // Killed from outside while a caller is blocked in Get.
  const std::string path2 = TempPath("announce2");
  Future<int> g = pool().Submit(Task(probe::kAnnounceAndHang), path2);
  std::thread killer([&] {
    std::optional<int> pid = WaitForAnnouncedPid(path2);
    if (pid) ::kill(*pid, SIGKILL);
  });
  absl::Status s2 = StatusWithin(g);
  killer.join();
  EXPECT_EQ(s2.code(), absl::StatusCode::kAborted) << s2;
  EXPECT_THAT(std::string(s2.message()), HasSubstr("signal 9"));
  ExpectServing();
}

// A worker's death dies with the thread that spawned it (PR_SET_PDEATHSIG),
// so only the pool's I/O thread may spawn: a replacement started by a
// caller that read the crash itself would be killed when that caller's
// thread ends.
TEST_F(FastPathTest, AReplacementOutlivesTheCallerThatSawTheCrash) {
  auto segfault = Task(faults::kSegfault);
  for (int round = 0; round < 5; ++round) {
    std::thread caller([&] {
      absl::Status s = StatusWithin(pool().Submit(segfault, 1));
      EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
      // The replacement is up (it has set its death signal) before this
      // thread ends.
      EXPECT_TRUE(WaitUntil([&] { return pool().WorkerPids().size() == 2; }));
      EXPECT_EQ(pool().Submit(Task(math::kAdd), 1, 2).Get(kWait), 3);
      absl::SleepFor(absl::Milliseconds(50));
    });
    caller.join();
  }
  ExpectServing();
  // Give a replacement tied to an ended thread time to be killed.
  absl::SleepFor(absl::Milliseconds(200));
  ExpectServing();
  int restarts = 0;
  std::vector<std::string> reasons;
  for (const WorkerStats& w : pool().Stats().workers) {
    restarts += w.restarts;
    reasons.insert(reasons.end(), w.restart_reasons.begin(), w.restart_reasons.end());
  }
  EXPECT_EQ(restarts, 5) << absl::StrJoin(reasons, "\n");
}

TEST_F(FastPathTest, ALoneCrashWithBreakPoolBreaksThePool) {
  PoolOptions opts = TestPoolOptions(2);
  opts.on_worker_death = WorkerDeathPolicy::kBreakPool;
  StartPool(opts);
  absl::Status s = StatusWithin(pool().Submit(Task(faults::kSegfault), 1));
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  absl::Status after = StatusWithin(pool().Submit(Task(math::kAdd), 1, 2));
  EXPECT_EQ(after.code(), absl::StatusCode::kAborted) << after;
  EXPECT_THAT(std::string(after.message()), HasSubstr("BrokenPool"));
}

TEST_F(FastPathTest, TaskTimeoutStillFailsTheWaitingCaller) {
  SubmitOptions opts;
  opts.timeout = absl::Milliseconds(10);  // runs out while the caller reads
  Future<int> f = pool().Submit(opts, Task(faults::kSleepMs), 5000);
  absl::Status s = StatusWithin(f);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  ExpectServing();
}

TEST_F(FastPathTest, WaitForTimesOutAndTheTaskStillCompletesLater) {
  Future<int> f = pool().Submit(Task(faults::kSleepMs), 200);
  EXPECT_FALSE(f.WaitFor(absl::Milliseconds(5)));
  EXPECT_EQ(f.Get(kWait), 200);
}

TEST_F(FastPathTest, TerminateFromAnotherThreadWhileACallerReads) {
  const std::string path = TempPath("announce");
  Future<int> f = pool().Submit(Task(probe::kAnnounceAndHang), path);
  absl::Status seen;
  std::thread waiter([&] { seen = StatusWithin(f); });
  ASSERT_TRUE(WaitForAnnouncedPid(path).has_value());
  EXPECT_TRUE(f.Terminate());
  waiter.join();
  EXPECT_EQ(seen.code(), absl::StatusCode::kCancelled) << seen;
  ExpectServing();
}

TEST_F(FastPathTest, ShutdownWhileACallerReadsLetsTheTaskFinish) {
  Future<int> f = pool().Submit(Task(faults::kSleepMs), 50);
  absl::Status seen;
  std::thread waiter([&] { seen = StatusWithin(f); });
  pool().Shutdown();  // waits for the task
  waiter.join();
  EXPECT_TRUE(seen.ok()) << seen;
  EXPECT_EQ(f.Get(kWait), 50);
}

TEST_F(FastPathTest, TerminatingThePoolWhileACallerReadsCancelsTheTask) {
  const std::string path = TempPath("announce");
  Future<int> f = pool().Submit(Task(probe::kAnnounceAndHang), path);
  absl::Status seen;
  std::thread waiter([&] { seen = StatusWithin(f); });
  ASSERT_TRUE(WaitForAnnouncedPid(path).has_value());
  TerminatePool();
  waiter.join();
  EXPECT_EQ(seen.code(), absl::StatusCode::kCancelled) << seen;
}

TEST_F(FastPathTest, ConcurrentGetsFromSeveralThreadsOnDifferentFutures) {
  auto add = Task(math::kAdd);
  constexpr int kThreads = 4;
  constexpr int kCalls = 200;
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i) {
        absl::StatusOr<int> r = pool().Submit(add, i, t * 1000).Result(kWait);
        if (!r.ok() || *r != i + t * 1000) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(pool().Stats().succeeded, static_cast<uint64_t>(kThreads * kCalls));
}

TEST_F(FastPathTest, SeveralThreadsWaitingOnOneFutureAllSeeIt) {
  Future<int> f = pool().Submit(Task(faults::kSleepMs), 30);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&] {
      absl::StatusOr<int> r = f.Result(kWait);
      if (r.ok() && *r == 30) ++ok;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 3);
}

TEST_F(FastPathTest, StderrIsForwardedBeforeTheFutureResolves) {
  StartPool(TestPoolOptions(1));
  auto chatter = Task(faults::kChatter);
  for (int i = 0; i < 20; ++i) {
    ::testing::internal::CaptureStderr();
    absl::StatusOr<int> r = pool().Submit(chatter, i).Result(kWait);
    std::string err = ::testing::internal::GetCapturedStderr();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(absl::StrContains(err, absl::StrCat("chatter: working on ", i)))
        << "call " << i << ": " << err;
  }
}

TEST_F(FastPathTest, ALoneTaskNobodyWaitsOnStillRunsItsDoneCallback) {
  // Its socket was parked for a waiter that never comes: the I/O thread
  // must take it back and deliver the answer.
  for (int i = 0; i < 5; ++i) {
    Future<int> f = pool().Submit(Task(math::kAdd), i, 1);
    absl::Notification called;
    f.AddDoneCallback([&](const Future<int>&) { called.Notify(); });
    ASSERT_TRUE(called.WaitForNotificationWithTimeout(kWait)) << "call " << i;
    EXPECT_EQ(f.Get(kWait), i + 1);
  }
  // Polling Done() only (no wait at all) also sees it finish.
  Future<int> g = pool().Submit(Task(math::kAdd), 2, 3);
  EXPECT_TRUE(WaitUntil([&] { return g.Done(); }));
}

TEST_F(FastPathTest, AsCompletedOverLoneSubmissions) {
  std::vector<Future<int>> fs;
  for (int i = 0; i < 2; ++i) fs.push_back(pool().Submit(Task(math::kAdd), i, 1));
  int seen = 0;
  for (auto& done : AsCompleted(fs, kWait)) {
    EXPECT_EQ(done.future.Get(kWait), static_cast<int>(done.index) + 1);
    ++seen;
  }
  EXPECT_EQ(seen, 2);
}

TEST_F(FastPathTest, RetiringWorkersAreReplacedBetweenSerialCalls) {
  PoolOptions opts = TestPoolOptions(1);
  opts.max_tasks_per_child = 1;
  StartPool(opts);
  auto add = Task(math::kAdd);
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(pool().Submit(add, i, 1).Get(kWait), i + 1);
  }
}

TEST_F(FastPathTest, SerialCallsAndAMapAtTheSameTime) {
  auto add = Task(math::kAdd);
  std::atomic<bool> stop{false};
  std::atomic<int> wrong{0};
  std::thread serial([&] {
    for (int i = 0; i < 300 && !stop; ++i) {
      absl::StatusOr<int> r = pool().Submit(add, i, 7).Result(kWait);
      if (!r.ok() || *r != i + 7) ++wrong;
    }
  });
  std::vector<int> xs(20000), ys(20000);
  for (int i = 0; i < 20000; ++i) xs[i] = ys[i] = i;
  long long sum = 0;
  for (int r : pool().Map(add, xs, ys)) sum += r;
  stop = true;
  serial.join();
  EXPECT_EQ(sum, 2LL * (19999LL * 20000 / 2));
  EXPECT_EQ(wrong.load(), 0);
}

}  // namespace
}  // namespace procpool
