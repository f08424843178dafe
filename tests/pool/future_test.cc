// Submit and the operations of a Future: Get/Result/Wait/WaitFor/Done/status,
// timeouts, Cancel, done-callbacks, and a task's exception as seen by the
// caller.

#include "pool/future.h"

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "pool/pool.h"
#include "tests/testing/pool_fixture.h"

namespace procpool {
namespace {

using ::procpool::testing::kWait;
using ::procpool::testing::PoolTest;
using ::procpool::testing::StatusWithin;
using ::procpool::testing::TempPath;
using ::procpool::testing::WaitForAnnouncedPid;
using ::procpool::testing::WaitUntil;

using FutureTest = PoolTest;

// ---- Reading a result ----

TEST_F(FutureTest, GetReturnsTheTaskValue) {
  EXPECT_EQ(pool().Submit(Task(math::kAdd), 1, 2).Get(kWait), 3);
}

TEST_F(FutureTest, ResultReturnsTheValueWithoutThrowing) {
  absl::StatusOr<int> r = pool().Submit(Task(math::kAdd), 40, 2).Result(kWait);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 42);
}

TEST_F(FutureTest, StringsAndVectorsCrossTheProcessBoundary) {
  EXPECT_EQ(
      pool().Submit(Task(math::kIdentity), std::string("h\0llo", 5)).Get(kWait),
      std::string("h\0llo", 5));
  EXPECT_DOUBLE_EQ(
      pool()
          .Submit(Task(math::kSum), std::vector<double>{1.5, 2.5, 3})
          .Get(kWait),
      7.0);
}

TEST_F(FutureTest, SubmitConvertsArgumentsToTheTaskTypes) {
  // A const char* becomes the task's std::string.
  EXPECT_EQ(pool().Submit(Task(math::kIdentity), "abc").Get(kWait), "abc");
}

TEST_F(FutureTest, StatusIsOkForATaskThatSucceeded) {
  Future<int> f = pool().Submit(Task(math::kAdd), 1, 1);
  ASSERT_TRUE(f.WaitFor(kWait));
  EXPECT_TRUE(f.status().ok());
}

TEST_F(FutureTest, DoneIsTrueOnceTheTaskFinished) {
  Future<int> f = pool().Submit(Task(math::kAdd), 1, 1);
  EXPECT_TRUE(WaitUntil([&] { return f.Done(); }));
  EXPECT_EQ(f.Get(kWait), 2);
}

TEST_F(FutureTest, DoneIsFalseWhileTheTaskRuns) {
  Future<int> f = pool().Submit(Task(faults::kHang), 0);
  EXPECT_FALSE(f.Done());
  EXPECT_FALSE(f.WaitFor(absl::Milliseconds(50)));
  EXPECT_FALSE(f.Done());
}

TEST_F(FutureTest, WaitForReturnsTrueWhenTheTaskFinishesInTime) {
  EXPECT_TRUE(pool().Submit(Task(faults::kSleepMs), 10).WaitFor(kWait));
}

TEST_F(FutureTest, WaitReturnsOnceTheTaskFinished) {
  Future<int> f = pool().Submit(Task(faults::kSleepMs), 20);
  f.Wait();  // bounded by the fixture's watchdog
  EXPECT_TRUE(f.Done());
  EXPECT_EQ(f.Get(kWait), 20);
}

TEST_F(FutureTest, GetWithoutTimeoutReturnsTheValue) {
  // Unbounded Get() only on a task that cannot hang; the watchdog bounds it.
  EXPECT_EQ(pool().Submit(Task(math::kAdd), 2, 2).Get(), 4);
}

TEST_F(FutureTest, CopiesShareTheOutcome) {
  Future<int> f = pool().Submit(Task(math::kAdd), 3, 4);
  Future<int> g = f;
  EXPECT_EQ(f.Get(kWait), 7);
  EXPECT_TRUE(g.Done());
  EXPECT_EQ(g.Get(kWait), 7);
}

TEST_F(FutureTest, ManyThreadsCanWaitOnOneFuture) {
  Future<int> f = pool().Submit(Task(faults::kSleepMs), 30);
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([f, &ok] {
      if (f.Result(kWait).value_or(-1) == 30) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 4);
}

TEST_F(FutureTest, DefaultConstructedFutureIsInvalid) {
  Future<int> f;
  EXPECT_FALSE(f.valid());
  EXPECT_TRUE(pool().Submit(Task(math::kAdd), 1, 1).valid());
}

TEST_F(FutureTest, SubmissionIndicesCountUp) {
  Future<int> a = pool().Submit(Task(math::kAdd), 1, 1);
  Future<int> b = pool().Submit(Task(math::kAdd), 1, 1);
  EXPECT_EQ(b.index(), a.index() + 1);
}

// ---- Get on an rvalue future ----

// Get() on an lvalue returns a reference into the shared state; on an
// rvalue (a temporary, or std::move(f)) it returns the value itself, so
// that `auto&& x = pool.Submit(...).Get();` holds no dangling reference.
static_assert(std::is_same_v<decltype(std::declval<Future<std::string>&>().Get()),
                             const std::string&>);
static_assert(
    std::is_same_v<decltype(std::declval<const Future<std::string>&>().Get()),
                   const std::string&>);
static_assert(std::is_same_v<decltype(std::declval<Future<std::string>>().Get()),
                             std::string>);
static_assert(std::is_same_v<decltype(std::declval<Future<std::string>&>().Get(
                                 absl::Seconds(1))),
                             const std::string&>);
static_assert(std::is_same_v<decltype(std::declval<Future<std::string>>().Get(
                                 absl::Seconds(1))),
                             std::string>);

TEST_F(FutureTest, GetOnATemporaryFutureReturnsAValueThatOutlivesIt) {
  // The temporary future is the last owner of the state: with a reference
  // into it, reading `value` would be a use after free (ASan reports it).
  const std::string big(4096, 'x');
  auto&& value = pool().Submit(Task(math::kIdentity), big).Get(kWait);
  EXPECT_EQ(value, big);
  const std::string& same = pool().Submit(Task(math::kIdentity), big).Get();
  EXPECT_EQ(same, big);
}

TEST_F(FutureTest, GetOnTheOnlyFutureMovesTheValueOut) {
  // A string this long owns a heap buffer, which a move hands over.
  Future<std::string> f =
      pool().Submit(Task(math::kIdentity), std::string(4096, 'z'));
  const char* buffer = f.Get(kWait).data();
  std::string value = std::move(f).Get(kWait);
  EXPECT_EQ(value.data(), buffer);
}

TEST_F(FutureTest, GetOnAnRvalueLeavesACopysValueIntact) {
  const std::string big(4096, 'y');
  Future<std::string> f = pool().Submit(Task(math::kIdentity), big);
  Future<std::string> copy = f;
  EXPECT_EQ(std::move(f).Get(kWait), big);
  EXPECT_EQ(copy.Get(kWait), big);
}

TEST_F(FutureTest, GetOnAnRvalueLeavesTheFutureInvalid) {
  Future<int> f = pool().Submit(Task(math::kAdd), 1, 2);
  EXPECT_EQ(std::move(f).Get(kWait), 3);
  EXPECT_FALSE(f.valid());  // NOLINT(bugprone-use-after-move): the point
}

TEST_F(FutureTest, GetOnAnRvalueOfAFailedTaskThrowsAndKeepsTheFuture) {
  Future<int> f = pool().Submit(Task(faults::kThrow), "boom");
  EXPECT_THROW(std::move(f).Get(kWait), TaskError);
  EXPECT_TRUE(f.valid());  // NOLINT(bugprone-use-after-move): the point
  EXPECT_EQ(StatusWithin(f).code(), absl::StatusCode::kUnknown);
}

// ---- Timeouts ----

TEST_F(FutureTest, GetWithTimeoutOnASlowTaskThrowsDeadlineExceeded) {
  Future<int> f = pool().Submit(Task(faults::kHang), 0);
  try {
    f.Get(absl::Milliseconds(100));
    FAIL() << "Get returned for a task that hangs";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.code(), absl::StatusCode::kDeadlineExceeded);
  }
}

TEST_F(FutureTest, ResultWithTimeoutOnASlowTaskReturnsDeadlineExceeded) {
  Future<int> f = pool().Submit(Task(faults::kHang), 0);
  EXPECT_EQ(f.Result(absl::Milliseconds(100)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST_F(FutureTest, ATimedOutWaitLeavesTheTaskRunning) {
  Future<int> f = pool().Submit(Task(faults::kSleepMs), 300);
  EXPECT_EQ(f.Result(absl::Milliseconds(10)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(f.Get(kWait), 300);
}

// ---- Cancel ----

TEST_F(FutureTest, CancelOfAQueuedTaskResolvesItCancelled) {
  // Keep both workers busy with more hanging tasks than they take in flight,
  // so the last submission stays in the pool's queue.
  std::vector<Future<int>> blockers;
  for (int i = 0; i < 8; ++i)
    blockers.push_back(pool().Submit(Task(faults::kHang), i));
  Future<int> queued = pool().Submit(Task(math::kAdd), 1, 2);
  EXPECT_TRUE(queued.Cancel());
  EXPECT_TRUE(queued.Done());
  EXPECT_TRUE(queued.Cancelled());
  EXPECT_EQ(StatusWithin(queued).code(), absl::StatusCode::kCancelled);
}

TEST_F(FutureTest, GetOfACancelledTaskThrowsCancelled) {
  std::vector<Future<int>> blockers;
  for (int i = 0; i < 8; ++i)
    blockers.push_back(pool().Submit(Task(faults::kHang), i));
  Future<int> queued = pool().Submit(Task(math::kAdd), 1, 2);
  ASSERT_TRUE(queued.Cancel());
  try {
    queued.Get(kWait);
    FAIL() << "Get returned a value for a cancelled task";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.code(), absl::StatusCode::kCancelled);
  }
}

TEST_F(FutureTest, CancelOfARunningTaskReturnsFalseAndTheTaskGoesOn) {
  // Python's Future.cancel(): a call that is running cannot be cancelled.
  const std::string announce = TempPath("running");
  Future<int> f = pool().Submit(Task(probe::kAnnounceAndHang), announce);
  ASSERT_TRUE(WaitForAnnouncedPid(announce).has_value());
  EXPECT_FALSE(f.Cancel());
  EXPECT_FALSE(f.WaitFor(absl::Milliseconds(50)));
  EXPECT_FALSE(f.Cancelled());
}

TEST_F(FutureTest, TerminateOfARunningTaskStopsItAndResolvesCancelled) {
  // future.h: "its worker is stopped ... and replaced, and the future
  // resolves with kCancelled".
  const std::string announce = TempPath("running");
  Future<int> f = pool().Submit(Task(probe::kAnnounceAndHang), announce);
  ASSERT_TRUE(WaitForAnnouncedPid(announce).has_value());
  EXPECT_TRUE(f.Terminate());
  EXPECT_EQ(StatusWithin(f).code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(f.Cancelled());
  EXPECT_EQ(pool().Submit(Task(math::kAdd), 1, 2).Get(kWait), 3);
}

TEST_F(FutureTest, CancelOfAFinishedTaskReturnsFalseAndKeepsTheValue) {
  Future<int> f = pool().Submit(Task(math::kAdd), 1, 2);
  ASSERT_EQ(f.Get(kWait), 3);
  EXPECT_FALSE(f.Cancel());
  EXPECT_FALSE(f.Cancelled());
  EXPECT_EQ(f.Get(kWait), 3);
}

TEST_F(FutureTest, CancellingAQueuedTaskDoesNotDisturbTheOthers) {
  std::vector<Future<int>> blockers;
  for (int i = 0; i < 8; ++i) {
    blockers.push_back(pool().Submit(Task(faults::kSleepMs), 20));
  }
  Future<int> cancelled = pool().Submit(Task(math::kAdd), 1, 2);
  Future<int> kept = pool().Submit(Task(math::kAdd), 3, 4);
  ASSERT_TRUE(cancelled.Cancel());
  EXPECT_EQ(kept.Get(kWait), 7);
  for (auto& b : blockers) EXPECT_EQ(b.Get(kWait), 20);
}

// ---- Done-callbacks ----

TEST_F(FutureTest, AddDoneCallbackRunsOnceWhenTheTaskFinishes) {
  Future<int> f = pool().Submit(Task(faults::kSleepMs), 30);
  std::atomic<int> calls{0};
  std::atomic<int> seen{-1};
  absl::Notification called;
  f.AddDoneCallback([&](const Future<int>& done) {
    seen = done.Result().value_or(-2);
    ++calls;
    called.Notify();
  });
  ASSERT_TRUE(called.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(seen.load(), 30);
  ASSERT_EQ(f.Get(kWait), 30);
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(FutureTest, AddDoneCallbackOnADoneFutureRunsAtOnceOnThisThread) {
  Future<int> f = pool().Submit(Task(math::kAdd), 1, 2);
  ASSERT_EQ(f.Get(kWait), 3);
  std::thread::id ran_on;
  f.AddDoneCallback(
      [&](const Future<int>&) { ran_on = std::this_thread::get_id(); });
  EXPECT_EQ(ran_on, std::this_thread::get_id());
}

TEST_F(FutureTest, AddDoneCallbackRunsForAFailedTask) {
  Future<int> f = pool().Submit(Task(faults::kThrow), "boom");
  absl::Notification called;
  absl::StatusCode code = absl::StatusCode::kOk;
  f.AddDoneCallback([&](const Future<int>& done) {
    code = done.Result().status().code();
    called.Notify();
  });
  ASSERT_TRUE(called.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(code, absl::StatusCode::kUnknown);
}

TEST_F(FutureTest, AddDoneCallbackRunsForACancelledTask) {
  std::vector<Future<int>> blockers;
  for (int i = 0; i < 8; ++i)
    blockers.push_back(pool().Submit(Task(faults::kHang), i));
  Future<int> queued = pool().Submit(Task(math::kAdd), 1, 2);
  bool called = false;
  queued.AddDoneCallback([&](const Future<int>&) { called = true; });
  ASSERT_TRUE(queued.Cancel());
  EXPECT_TRUE(called);  // the cancelling thread runs it
}

TEST_F(FutureTest, EveryDoneCallbackRuns) {
  Future<int> f = pool().Submit(Task(faults::kSleepMs), 20);
  std::atomic<int> calls{0};
  for (int i = 0; i < 5; ++i) {
    f.AddDoneCallback([&](const Future<int>&) { ++calls; });
  }
  ASSERT_EQ(f.Get(kWait), 20);
  EXPECT_TRUE(WaitUntil([&] { return calls.load() == 5; }));
}

TEST_F(FutureTest, ADoneCallbackMaySubmitAnotherTask) {
  // Callbacks run on the pool's I/O thread; queueing more work from there
  // must not deadlock.
  Future<int> first = pool().Submit(Task(faults::kSleepMs), 20);
  const TaskHandle<int(int, int)> add = Task(math::kAdd);
  Future<int> second;
  absl::Notification submitted;
  first.AddDoneCallback([&](const Future<int>& done) {
    second = pool().Submit(add, done.Result().value_or(0), 1);
    submitted.Notify();
  });
  ASSERT_TRUE(submitted.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(second.Get(kWait), 21);
}

// A callback that throws is reported on stderr and counted; its exception
// goes no further (as CPython's Future._invoke_callbacks logs and goes on).

TEST_F(FutureTest, ACallbackThatThrowsOnThePoolsThreadIsCountedAndThePoolGoesOn) {
  Future<int> f = pool().Submit(Task(faults::kSleepMs), 30);
  f.AddDoneCallback(
      [](const Future<int>&) { throw std::runtime_error("callback failed"); });
  // Nobody waits on `f`: the pool's I/O thread completes it and runs the
  // callback there.
  EXPECT_TRUE(WaitUntil([&] { return pool().Stats().callback_errors == 1; }));
  EXPECT_EQ(f.Get(kWait), 30);
  EXPECT_EQ(pool().Submit(Task(math::kAdd), 1, 2).Get(kWait), 3);
}

TEST_F(FutureTest, ACallbackThatThrowsInlineDoesNotThrowFromAddDoneCallback) {
  Future<int> f = pool().Submit(Task(math::kAdd), 1, 2);
  ASSERT_EQ(f.Get(kWait), 3);
  // `f` is done, so the callback runs at once on this thread.
  EXPECT_NO_THROW(f.AddDoneCallback(
      [](const Future<int>&) { throw std::runtime_error("callback failed"); }));
  EXPECT_EQ(pool().Stats().callback_errors, 1u);
}

TEST_F(FutureTest, ACallbackThatThrowsDoesNotComeOutOfAnotherThreadsWaitFor) {
  // A lone task on an idle pool: a thread that waits for it may read its
  // worker's answer itself, and then runs its callbacks.
  Future<int> f = pool().Submit(Task(faults::kSleepMs), 30);
  f.AddDoneCallback(
      [](const Future<int>&) { throw std::runtime_error("callback failed"); });
  bool threw = false;
  bool done = false;
  std::thread waiter([&] {
    try {
      done = f.WaitFor(kWait);
    } catch (...) {
      threw = true;
    }
  });
  waiter.join();
  EXPECT_FALSE(threw);
  EXPECT_TRUE(done);
  EXPECT_TRUE(WaitUntil([&] { return pool().Stats().callback_errors == 1; }));
}

TEST_F(FutureTest, EveryThrowingCallbackIsCountedAndTheOthersStillRun) {
  Future<int> f = pool().Submit(Task(faults::kSleepMs), 30);
  std::atomic<int> ran{0};
  for (int i = 0; i < 3; ++i) {
    f.AddDoneCallback([](const Future<int>&) { throw 7; });
    f.AddDoneCallback([&](const Future<int>&) { ++ran; });
  }
  ASSERT_EQ(f.Get(kWait), 30);
  EXPECT_TRUE(WaitUntil([&] { return ran.load() == 3; }));
  EXPECT_TRUE(WaitUntil([&] { return pool().Stats().callback_errors == 3; }));
}

// ---- A task's exception ----

TEST_F(FutureTest, TaskThrowingRuntimeErrorFailsWithUnknown) {
  EXPECT_EQ(StatusWithin(pool().Submit(Task(faults::kThrow), "boom")).code(),
            absl::StatusCode::kUnknown);
}

TEST_F(FutureTest, GetRethrowsTheTaskExceptionTypeAndWhat) {
  Future<int> f = pool().Submit(Task(faults::kThrow), "boom");
  try {
    f.Get(kWait);
    FAIL() << "Get returned for a task that throws";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.code(), absl::StatusCode::kUnknown);
    EXPECT_EQ(e.exception_type(), "std::runtime_error");
    EXPECT_EQ(e.exception_what(), "boom");
  }
}

TEST_F(FutureTest, InvalidArgumentExceptionKeepsItsType) {
  Future<int> f = pool().Submit(Task(faults::kCheckNonNegative), -5);
  try {
    f.Get(kWait);
    FAIL() << "Get returned for a task that throws";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.code(), absl::StatusCode::kUnknown);
    EXPECT_EQ(e.exception_type(), "std::invalid_argument");
    EXPECT_EQ(e.exception_what(), "negative input: -5");
  }
}

TEST_F(FutureTest, NonStdExceptionFailsWithUnknownAndItsTypeName) {
  Future<int> f = pool().Submit(Task(faults::kThrowInt), 7);
  try {
    f.Get(kWait);
    FAIL() << "Get returned for a task that throws";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.code(), absl::StatusCode::kUnknown);
    EXPECT_EQ(e.exception_type(), "int");
    EXPECT_EQ(e.exception_what(), "");
  }
}

TEST_F(FutureTest, ResultCarriesTheExceptionPayloads) {
  absl::Status s = StatusWithin(pool().Submit(Task(faults::kThrow), "oops"));
  ASSERT_EQ(s.code(), absl::StatusCode::kUnknown);
  auto type = s.GetPayload(kExceptionTypePayload);
  auto what = s.GetPayload(kExceptionWhatPayload);
  ASSERT_TRUE(type.has_value());
  ASSERT_TRUE(what.has_value());
  EXPECT_EQ(std::string(*type), "std::runtime_error");
  EXPECT_EQ(std::string(*what), "oops");
}

TEST_F(FutureTest, ExceptionMessageNamesTheTaskAndItsInput) {
  // The message is what a user reads: it says which task and which input.
  Future<int> f = pool().Submit(Task(faults::kThrow), "boom");
  absl::Status s = StatusWithin(f);
  EXPECT_NE(s.message().find("throw"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find(absl::StrCat("input #", f.index())),
            absl::string_view::npos)
      << s;
}

TEST_F(FutureTest, TaskErrorIsAStdRuntimeError) {
  Future<int> f = pool().Submit(Task(faults::kThrow), "boom");
  EXPECT_THROW(f.Get(kWait), std::runtime_error);
}

TEST_F(FutureTest, AThrowingTaskDoesNotHurtTheWorker) {
  std::vector<int> pids = pool().WorkerPids();
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(StatusWithin(pool().Submit(Task(faults::kThrow), "x")).code(),
              absl::StatusCode::kUnknown);
  }
  EXPECT_EQ(pool().Submit(Task(math::kAdd), 1, 2).Get(kWait), 3);
  EXPECT_EQ(pool().WorkerPids(), pids);
}

}  // namespace
}  // namespace procpool
