// Backpressure: PoolOptions::max_pending bounds the tasks (and map items) a
// pool holds; Submit waits for a slot up to SubmitOptions::wait, TrySubmit
// never waits, maps stay within the bound and still complete, and Shutdown
// or Terminate wake a waiting Submit. Every wait is bounded.

#include <atomic>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "pool/internal/backend.h"
#include "pool/pool.h"
#include "tests/testing/pool_fixture.h"

namespace procpool {
namespace {

using ::procpool::testing::kWait;
using ::procpool::testing::PoolTest;
using ::procpool::testing::StatusWithin;
using ::procpool::testing::TestPoolOptions;
using ::procpool::testing::WaitUntil;

class BackpressureTest : public PoolTest {
 protected:
  void SetUp() override {}  // each test starts its own pool

  void StartBounded(int64_t max_pending, int workers = 2) {
    PoolOptions o = TestPoolOptions(workers);
    o.max_pending = max_pending;
    StartPool(o);
  }
  internal::Admission& admission() {
    std::shared_ptr<internal::Admission> a =
        pool().core_for_internal_use().admission();
    if (a == nullptr) throw std::runtime_error("the pool has no bound");
    return *a;
  }
  // Submits `hang` tasks until `n` run, so that they hold n slots.
  std::vector<Future<int>> Hang(int n) {
    std::vector<Future<int>> out;
    for (int i = 0; i < n; ++i) out.push_back(pool().Submit(Task(faults::kHang), i));
    return out;
  }
};

TEST_F(BackpressureTest, SubmitWaitsWhileFullAndGoesOnWhenASlotFrees) {
  StartBounded(2);
  std::vector<Future<int>> hung = Hang(2);
  EXPECT_EQ(admission().in_use(), 2u);

  std::optional<Future<int>> third;
  absl::Notification returned;
  std::thread submitter([&] {
    third.emplace(pool().Submit(Task(math::kAdd), 20, 22));
    returned.Notify();
  });
  ASSERT_TRUE(WaitUntil([&] { return admission().waiting() == 1; }));
  EXPECT_FALSE(returned.WaitForNotificationWithTimeout(absl::Milliseconds(100)))
      << "Submit returned while the pool was full";

  // A slot frees when a future resolves, here by cancellation.
  ASSERT_TRUE(hung[0].Terminate());
  ASSERT_TRUE(returned.WaitForNotificationWithTimeout(kWait));
  submitter.join();
  EXPECT_EQ(third->Get(kWait), 42);
  EXPECT_EQ(absl::IsCancelled(StatusWithin(hung[0])), true);
}

TEST_F(BackpressureTest, AWaitThatRunsOutResolvesResourceExhaustedNamingTheBound) {
  StartBounded(1);
  std::vector<Future<int>> hung = Hang(1);
  SubmitOptions so;
  so.wait = absl::Milliseconds(50);
  const absl::Time start = absl::Now();
  Future<int> f = pool().Submit(so, Task(math::kAdd), 1, 2);
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(f.Done()) << "a refused task resolves before Submit returns";
  const absl::Status s = f.status();
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "PoolOptions::max_pending is 1")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "SubmitOptions::wait (50ms)")) << s;
  EXPECT_GE(took, absl::Milliseconds(45));
  EXPECT_LT(took, kWait);
  EXPECT_EQ(admission().in_use(), 1u) << "the refused task took no slot";
}

TEST_F(BackpressureTest, TrySubmitRefusesAtOnceWhenFullAndQueuesOtherwise) {
  StartBounded(1);
  std::vector<Future<int>> hung = Hang(1);
  const absl::Time start = absl::Now();
  absl::StatusOr<Future<int>> refused = pool().TrySubmit(Task(math::kAdd), 1, 2);
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(refused.status())) << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(),
                                "PoolOptions::max_pending is 1"))
      << refused.status();

  ASSERT_TRUE(hung[0].Terminate());
  ASSERT_TRUE(WaitUntil([&] { return admission().in_use() == 0; }));
  absl::StatusOr<Future<int>> taken = pool().TrySubmit(Task(math::kAdd), 1, 2);
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(taken->Get(kWait), 3);
}

TEST_F(BackpressureTest, TrySubmitWithoutABoundIsSubmit) {
  StartPool(TestPoolOptions());
  absl::StatusOr<Future<int>> f = pool().TrySubmit(Task(math::kAdd), 2, 3);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->Get(kWait), 5);
  EXPECT_EQ(pool().core_for_internal_use().admission(), nullptr);
}

TEST_F(BackpressureTest, ASlotFreesWhenATaskCrashesItsWorker) {
  StartBounded(1);
  Future<int> crash = pool().Submit(Task(faults::kSegfault), 0);
  SubmitOptions so;
  so.wait = kWait;
  Future<int> next = pool().Submit(so, Task(math::kAdd), 1, 1);
  EXPECT_TRUE(absl::IsAborted(StatusWithin(crash))) << crash.status();
  EXPECT_EQ(next.Get(kWait), 2);
}

TEST_F(BackpressureTest, AMapWithABoundBelowItsWindowCompletesInOrder) {
  StartBounded(3);
  std::vector<int> xs(2000), ys(2000);
  std::iota(xs.begin(), xs.end(), 0);
  std::iota(ys.begin(), ys.end(), 1);
  std::atomic<bool> stop{false};
  std::atomic<size_t> peak{0};
  std::thread watcher([&] {
    while (!stop) {
      peak = std::max(peak.load(), admission().in_use());
      absl::SleepFor(absl::Microseconds(200));
    }
  });
  MapOptions mo;
  mo.window = 64;
  mo.chunksize = 8;  // above the bound: chunks are cut to it
  size_t i = 0;
  for (int r : pool().Map(mo, Task(math::kAdd), xs, ys)) {
    ASSERT_EQ(r, 2 * static_cast<int>(i) + 1);
    ++i;
  }
  stop = true;
  watcher.join();
  EXPECT_EQ(i, xs.size());
  EXPECT_LE(peak.load(), 3u);
  // A chunk gives its slots back in a done-callback, which may run just
  // after the map handed out its last result.
  EXPECT_TRUE(WaitUntil([&] { return admission().in_use() == 0; })) << admission().in_use();
}

TEST_F(BackpressureTest, UnorderedAndEagerMapsCompleteUnderATightBound) {
  StartBounded(1);
  std::vector<int> xs(300);
  std::iota(xs.begin(), xs.end(), 0);
  size_t n = 0;
  long sum = 0;
  for (const auto& u : pool().ImapUnordered(Task(math::kNoop), xs)) {
    ASSERT_TRUE(u.result.ok()) << u.result.status();
    sum += u.index;
    ++n;
  }
  EXPECT_EQ(n, xs.size());
  EXPECT_EQ(sum, 299 * 300 / 2);
  std::vector<std::tuple<int, int>> pairs;
  for (int k = 0; k < 300; ++k) pairs.emplace_back(k, k);
  absl::StatusOr<std::vector<int>> all = pool().Starmap(Task(math::kAdd), pairs);
  ASSERT_TRUE(all.ok()) << all.status();
  for (int k = 0; k < 300; ++k) ASSERT_EQ((*all)[k], 2 * k);
}

TEST_F(BackpressureTest, AMapAndSubmittersShareTheBoundAndAllFinish) {
  StartBounded(4);
  std::atomic<int> ok{0};
  std::vector<std::thread> producers;
  for (int t = 0; t < 3; ++t) {
    producers.emplace_back([&, t] {
      for (int k = 0; k < 200; ++k) {
        if (pool().Submit(Task(math::kAdd), t, k).Get(kWait) == t + k) ++ok;
      }
    });
  }
  std::vector<int> xs(1000, 1), ys(1000, 2);
  absl::StatusOr<std::vector<int>> all = pool().MapAll(Task(math::kAdd), xs, ys);
  for (auto& p : producers) p.join();
  ASSERT_TRUE(all.ok()) << all.status();
  for (int r : *all) ASSERT_EQ(r, 3);
  EXPECT_EQ(ok.load(), 600);
}

TEST_F(BackpressureTest, AMapsTimeoutEndsItsWaitForASlot) {
  StartBounded(1);
  std::vector<Future<int>> hung = Hang(1);
  MapOptions mo;
  mo.timeout = absl::Milliseconds(100);
  std::vector<int> xs = {1, 2, 3};
  std::vector<absl::StatusOr<int>> got;
  for (const absl::StatusOr<int>& r : pool().TryMap(mo, Task(math::kNoop), xs)) {
    got.push_back(r);
  }
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(absl::IsDeadlineExceeded(got[0].status())) << got[0].status();
  EXPECT_TRUE(absl::StrContains(got[0].status().message(), "PoolOptions::max_pending"))
      << got[0].status();
}

TEST_F(BackpressureTest, ShutdownWakesAWaitingSubmitter) {
  StartBounded(1);
  std::vector<Future<int>> hung = Hang(1);
  std::optional<Future<int>> blocked;
  absl::Notification returned;
  std::thread submitter([&] {
    blocked.emplace(pool().Submit(Task(math::kAdd), 1, 1));
    returned.Notify();
  });
  ASSERT_TRUE(WaitUntil([&] { return admission().waiting() == 1; }));
  // Shutdown with a deadline: the hung task is cancelled at it, and the
  // waiting Submit is refused at once.
  std::thread stopper([&] { pool().Shutdown(absl::Milliseconds(200)); });
  ASSERT_TRUE(returned.WaitForNotificationWithTimeout(kWait));
  stopper.join();
  submitter.join();
  EXPECT_TRUE(absl::IsFailedPrecondition(StatusWithin(*blocked))) << blocked->status();
  EXPECT_TRUE(absl::IsCancelled(StatusWithin(hung[0]))) << hung[0].status();
}

TEST_F(BackpressureTest, TerminateWakesEveryWaitingSubmitter) {
  StartBounded(1);
  std::vector<Future<int>> hung = Hang(1);
  constexpr int kSubmitters = 4;
  std::vector<std::optional<Future<int>>> blocked(kSubmitters);
  std::atomic<int> returned{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < kSubmitters; ++i) {
    ts.emplace_back([&, i] {
      blocked[i].emplace(pool().Submit(Task(math::kAdd), i, 1));
      ++returned;
    });
  }
  ASSERT_TRUE(WaitUntil([&] { return admission().waiting() == kSubmitters; }));
  pool().Terminate();
  ASSERT_TRUE(WaitUntil([&] { return returned.load() == kSubmitters; }));
  for (auto& t : ts) t.join();
  for (auto& f : blocked) {
    EXPECT_TRUE(absl::IsFailedPrecondition(StatusWithin(*f))) << f->status();
  }
  EXPECT_TRUE(absl::IsCancelled(StatusWithin(hung[0])));
}

TEST_F(BackpressureTest, ASubmitFromADoneCallbackNeverWaits) {
  StartBounded(2);
  std::vector<Future<int>> hung = Hang(1);
  Future<int> first = pool().Submit(Task(faults::kSleepMs), 10);
  std::atomic<int> calls{0};
  std::optional<Future<int>> second, third;
  absl::Notification done;
  first.AddDoneCallback([&](const Future<int>&) {
    // `first`'s slot is free by now: the second takes it, the third finds
    // the pool full and is refused at once instead of holding up the pool.
    second.emplace(pool().Submit(Task(math::kAdd), 1, 1));
    third.emplace(pool().Submit(Task(math::kAdd), 2, 2));
    ++calls;
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(second->Get(kWait), 2);
  EXPECT_TRUE(absl::IsResourceExhausted(StatusWithin(*third))) << third->status();
  EXPECT_TRUE(absl::StrContains(third->status().message(), "does not wait"))
      << third->status();
}

TEST_F(BackpressureTest, OutOfRangeOptionsAreRefusedNamingTheField) {
  PoolOptions o = TestPoolOptions();
  o.max_pending = -1;
  absl::StatusOr<ProcessPool> bad = ProcessPool::Create(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status())) << bad.status();
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "PoolOptions::max_pending"))
      << bad.status();

  StartBounded(1);
  SubmitOptions so;
  so.wait = absl::Milliseconds(-1);
  Future<int> f = pool().Submit(so, Task(math::kAdd), 1, 1);
  EXPECT_TRUE(absl::IsInvalidArgument(StatusWithin(f))) << f.status();
  EXPECT_TRUE(absl::StrContains(f.status().message(), "SubmitOptions::wait")) << f.status();
  EXPECT_EQ(admission().in_use(), 0u);
}

}  // namespace
}  // namespace procpool
