// AsCompleted and Wait over many futures: completion order, which future
// each item is, timeouts, and the FIRST_COMPLETED / FIRST_EXCEPTION /
// ALL_COMPLETED conditions.
//
// Where a test needs one task to finish before another, the quick task is
// submitted first: a worker runs its tasks in arrival order, so it finishes
// first wherever the pool places the two.

#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "pool/future.h"
#include "pool/internal/task_state.h"
#include "pool/pool.h"
#include "tests/testing/pool_fixture.h"

namespace procpool {
namespace {

using ::procpool::testing::kWait;
using ::procpool::testing::PoolTest;

using AsCompletedTest = PoolTest;
using WaitTest = PoolTest;

// Done-callbacks registered on `f` that have not run.
template <class R>
size_t Callbacks(const Future<R>& f) {
  return f.state_for_internal_use()->NumDoneCallbacksForTesting();
}

// ---- AsCompleted ----

TEST_F(AsCompletedTest, YieldsEveryIndexExactlyOnce) {
  std::vector<Future<int>> futures;
  for (int i = 0; i < 20; ++i)
    futures.push_back(pool().Submit(Task(math::kAdd), i, i));
  std::multiset<size_t> seen;
  for (const Completed<int>& c : AsCompleted(futures, kWait)) {
    EXPECT_TRUE(c.future.Done());
    seen.insert(c.index);
  }
  std::multiset<size_t> want;
  for (size_t i = 0; i < futures.size(); ++i) want.insert(i);
  EXPECT_EQ(seen, want);
}

TEST_F(AsCompletedTest, EachItemCarriesItsOwnFuture) {
  std::vector<Future<int>> futures;
  for (int i = 0; i < 10; ++i)
    futures.push_back(pool().Submit(Task(math::kAdd), i, 100));
  for (const Completed<int>& c : AsCompleted(futures, kWait)) {
    EXPECT_EQ(c.future.Get(kWait), static_cast<int>(c.index) + 100);
    EXPECT_EQ(c.future.index(), futures[c.index].index());
  }
}

TEST_F(AsCompletedTest, YieldsInCompletionOrder) {
  // Record the order in which the futures really complete, then compare.
  std::vector<int> sleeps = {200, 10, 120, 60, 0, 30};
  std::vector<Future<int>> futures;
  absl::Mutex mu;
  std::vector<size_t> completed;
  for (size_t i = 0; i < sleeps.size(); ++i) {
    futures.push_back(pool().Submit(Task(faults::kSleepMs), sleeps[i]));
    futures.back().AddDoneCallback([&, i](const Future<int>&) {
      absl::MutexLock l(&mu);
      completed.push_back(i);
    });
  }
  std::vector<size_t> yielded;
  for (const Completed<int>& c : AsCompleted(futures, kWait))
    yielded.push_back(c.index);
  absl::MutexLock l(&mu);
  EXPECT_EQ(yielded, completed);
  EXPECT_EQ(yielded.size(), sleeps.size());
}

TEST_F(AsCompletedTest, YieldsAQuickTaskBeforeASlowOneListedEarlier) {
  Future<int> quick = pool().Submit(Task(faults::kSleepMs), 0);
  Future<int> slow = pool().Submit(Task(faults::kSleepMs), 400);
  std::vector<size_t> yielded;
  for (const Completed<int>& c :
       AsCompleted(std::vector<Future<int>>{slow, quick}, kWait)) {
    yielded.push_back(c.index);
  }
  EXPECT_EQ(yielded, (std::vector<size_t>{1, 0}));
}

TEST_F(AsCompletedTest, YieldsFailedFuturesToo) {
  std::vector<Future<int>> futures = {pool().Submit(Task(faults::kThrow), "x"),
                                      pool().Submit(Task(math::kAdd), 1, 1)};
  int failed = 0, ok = 0;
  for (const Completed<int>& c : AsCompleted(futures, kWait)) {
    (c.future.Result().ok() ? ok : failed)++;
  }
  EXPECT_EQ(failed, 1);
  EXPECT_EQ(ok, 1);
}

TEST_F(AsCompletedTest, YieldsAlreadyFinishedFutures) {
  std::vector<Future<int>> futures = {pool().Submit(Task(math::kAdd), 1, 1),
                                      pool().Submit(Task(math::kAdd), 2, 2)};
  for (auto& f : futures) ASSERT_TRUE(f.WaitFor(kWait));
  size_t count = 0;
  for (const Completed<int>& c : AsCompleted(futures, kWait)) {
    (void)c;
    ++count;
  }
  EXPECT_EQ(count, 2u);
}

TEST_F(AsCompletedTest, NoFuturesYieldNothing) {
  size_t count = 0;
  for (const Completed<int>& c :
       AsCompleted(std::vector<Future<int>>{}, kWait)) {
    (void)c;
    ++count;
  }
  EXPECT_EQ(count, 0u);
}

TEST_F(AsCompletedTest, TimeoutThrowsDeadlineExceededWhileAHungTaskIsPending) {
  Future<int> quick = pool().Submit(Task(math::kAdd), 1, 2);
  Future<int> hung = pool().Submit(Task(faults::kHang), 0);
  std::vector<size_t> yielded;
  absl::Time start = absl::Now();
  try {
    for (const Completed<int>& c : AsCompleted(
             std::vector<Future<int>>{quick, hung}, absl::Milliseconds(300))) {
      yielded.push_back(c.index);
    }
    FAIL() << "AsCompleted ended although a future is still pending";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.code(), absl::StatusCode::kDeadlineExceeded);
  }
  EXPECT_EQ(yielded, (std::vector<size_t>{0}));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_FALSE(hung.Done());
}

TEST_F(AsCompletedTest, ARangeDestroyedEarlyRemovesItsCallbacks) {
  std::vector<Future<int>> futures = {pool().Submit(Task(math::kAdd), 1, 1),
                                      pool().Submit(Task(faults::kHang), 0),
                                      pool().Submit(Task(faults::kHang), 1)};
  {
    auto completed = AsCompleted(futures, kWait);
    auto it = completed.begin();
    ASSERT_EQ(it->index, 0u);
  }
  EXPECT_EQ(Callbacks(futures[1]), 0u);
  EXPECT_EQ(Callbacks(futures[2]), 0u);
}

// ---- Wait ----

TEST_F(WaitTest, AllCompletedReturnsEveryIndexAsDone) {
  std::vector<Future<int>> futures;
  for (int i = 0; i < 8; ++i)
    futures.push_back(pool().Submit(Task(faults::kSleepMs), i * 5));
  WaitResult r = Wait(futures, ALL_COMPLETED, kWait);
  EXPECT_EQ(r.done, (std::vector<size_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_TRUE(r.not_done.empty());
  for (auto& f : futures) EXPECT_TRUE(f.Done());
}

TEST_F(WaitTest, AllCompletedTimesOutWithTheHungFutureNotDone) {
  std::vector<Future<int>> futures = {pool().Submit(Task(math::kAdd), 1, 1),
                                      pool().Submit(Task(faults::kHang), 0)};
  ASSERT_TRUE(futures[0].WaitFor(kWait));
  absl::Time start = absl::Now();
  WaitResult r = Wait(futures, ALL_COMPLETED, absl::Milliseconds(200));
  absl::Duration took = absl::Now() - start;
  EXPECT_EQ(r.done, (std::vector<size_t>{0}));
  EXPECT_EQ(r.not_done, (std::vector<size_t>{1}));
  EXPECT_GE(took, absl::Milliseconds(150));
  EXPECT_LT(took, absl::Seconds(5));
}

TEST_F(WaitTest, FirstCompletedReturnsOnceOneIsDone) {
  std::vector<Future<int>> futures = {pool().Submit(Task(math::kAdd), 1, 1),
                                      pool().Submit(Task(faults::kHang), 0)};
  WaitResult r = Wait(futures, FIRST_COMPLETED, kWait);
  EXPECT_EQ(r.done, (std::vector<size_t>{0}));
  EXPECT_EQ(r.not_done, (std::vector<size_t>{1}));
}

TEST_F(WaitTest, FirstExceptionReturnsAtTheFirstFailure) {
  std::vector<Future<int>> futures = {pool().Submit(Task(faults::kThrow), "x"),
                                      pool().Submit(Task(faults::kHang), 0)};
  WaitResult r = Wait(futures, FIRST_EXCEPTION, kWait);
  EXPECT_EQ(r.done, (std::vector<size_t>{0}));
  EXPECT_EQ(r.not_done, (std::vector<size_t>{1}));
}

TEST_F(WaitTest, FirstExceptionWithoutFailuresWaitsForAll) {
  std::vector<Future<int>> futures;
  for (int i = 0; i < 4; ++i)
    futures.push_back(pool().Submit(Task(faults::kSleepMs), 10 * i));
  WaitResult r = Wait(futures, FIRST_EXCEPTION, kWait);
  EXPECT_EQ(r.done.size(), 4u);
  EXPECT_TRUE(r.not_done.empty());
}

TEST_F(WaitTest, FirstExceptionCountsAWorkerCrashAsAFailure) {
  std::vector<Future<int>> futures = {pool().Submit(Task(faults::kSegfault), 0),
                                      pool().Submit(Task(faults::kHang), 0)};
  WaitResult r = Wait(futures, FIRST_EXCEPTION, kWait);
  EXPECT_EQ(r.done, (std::vector<size_t>{0}));
  EXPECT_EQ(futures[0].Result().status().code(), absl::StatusCode::kAborted);
}

TEST_F(WaitTest, FirstExceptionDoesNotCountACancelledFutureAsAFailure) {
  // As in concurrent.futures.wait, only a raised exception ends a
  // FIRST_EXCEPTION wait early; a cancelled future is merely done. The
  // blockers keep both workers busy for a while, so the cancelled task was
  // still queued and the last blocker is far from done when Wait starts.
  std::vector<Future<int>> blockers;
  for (int i = 0; i < 8; ++i)
    blockers.push_back(pool().Submit(Task(faults::kSleepMs), 100));
  Future<int> cancelled = pool().Submit(Task(math::kAdd), 1, 2);
  ASSERT_TRUE(cancelled.Cancel());
  std::vector<Future<int>> futures = {cancelled, blockers.back()};
  WaitResult r = Wait(futures, FIRST_EXCEPTION, kWait);
  EXPECT_EQ(r.done, (std::vector<size_t>{0, 1}));
  EXPECT_TRUE(r.not_done.empty());
}

TEST_F(WaitTest, FirstCompletedTimesOutWhenNothingFinishes) {
  std::vector<Future<int>> futures = {pool().Submit(Task(faults::kHang), 0)};
  WaitResult r = Wait(futures, FIRST_COMPLETED, absl::Milliseconds(100));
  EXPECT_TRUE(r.done.empty());
  EXPECT_EQ(r.not_done, (std::vector<size_t>{0}));
}

TEST_F(WaitTest, PollingWithAZeroTimeoutLeavesNoCallbacksBehind) {
  std::vector<Future<int>> futures;
  for (int i = 0; i < 4; ++i)
    futures.push_back(pool().Submit(Task(faults::kHang), i));
  for (int i = 0; i < 5000; ++i) {
    WaitResult r = Wait(futures, FIRST_COMPLETED, absl::ZeroDuration());
    ASSERT_TRUE(r.done.empty());
  }
  for (const Future<int>& f : futures) EXPECT_EQ(Callbacks(f), 0u);
}

TEST_F(WaitTest, AWaitThatTimesOutRemovesItsCallbacks) {
  std::vector<Future<int>> futures = {pool().Submit(Task(faults::kHang), 0)};
  for (int i = 0; i < 50; ++i) {
    WaitResult r = Wait(futures, ALL_COMPLETED, absl::Milliseconds(1));
    ASSERT_EQ(r.not_done, (std::vector<size_t>{0}));
  }
  EXPECT_EQ(Callbacks(futures[0]), 0u);
}

TEST_F(WaitTest, AWaitWhoseConditionAlreadyHoldsRegistersNothing) {
  std::vector<Future<int>> futures = {pool().Submit(Task(math::kAdd), 1, 1),
                                      pool().Submit(Task(faults::kHang), 0)};
  ASSERT_TRUE(futures[0].WaitFor(kWait));
  WaitResult r = Wait(futures, FIRST_COMPLETED, kWait);
  EXPECT_EQ(r.done, (std::vector<size_t>{0}));
  EXPECT_EQ(Callbacks(futures[1]), 0u);
}

TEST_F(WaitTest, WaitOnNoFuturesReturnsAtOnce) {
  for (WaitMode mode : {FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED}) {
    WaitResult r = Wait(std::vector<Future<int>>{}, mode, kWait);
    EXPECT_TRUE(r.done.empty());
    EXPECT_TRUE(r.not_done.empty());
  }
}

}  // namespace
}  // namespace procpool
