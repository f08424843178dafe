// Admission (pool/internal/admission.h): the counter behind
// PoolOptions::max_pending, without a pool. Every wait is bounded.
#include "pool/internal/admission.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace procpool::internal {
namespace {

// Polls until `cond` holds, at most 10 s.
template <class F>
bool Eventually(F cond) {
  const absl::Time end = absl::Now() + absl::Seconds(10);
  while (!cond()) {
    if (absl::Now() > end) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

TEST(AdmissionTest, TakesUpToTheLimitThenRefusesWithoutWaiting) {
  Admission a(3);
  EXPECT_EQ(a.TryAcquire(1), 1u);
  EXPECT_EQ(a.TryAcquire(5), 2u);  // only what is free
  EXPECT_EQ(a.TryAcquire(1), 0u);
  EXPECT_EQ(a.in_use(), 3u);
  a.Release(2);
  EXPECT_EQ(a.TryAcquire(4), 2u);
  EXPECT_EQ(a.in_use(), 3u);
}

TEST(AdmissionTest, AWaitEndsAtItsDeadlineWithNothingTaken) {
  Admission a(1);
  ASSERT_EQ(a.TryAcquire(1), 1u);
  const absl::Time start = absl::Now();
  EXPECT_EQ(a.Acquire(1, start + absl::Milliseconds(50)), 0u);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(45));
  EXPECT_EQ(a.in_use(), 1u);
  EXPECT_EQ(a.waiting(), 0u);
}

TEST(AdmissionTest, AReleaseWakesAWaiter) {
  Admission a(1);
  ASSERT_EQ(a.TryAcquire(1), 1u);
  std::atomic<size_t> got{99};
  std::thread t([&] { got = a.Acquire(1, absl::Now() + absl::Seconds(10)); });
  ASSERT_TRUE(Eventually([&] { return a.waiting() == 1; }));
  EXPECT_EQ(got.load(), 99u);
  a.Release(1);
  t.join();
  EXPECT_EQ(got.load(), 1u);
  EXPECT_EQ(a.in_use(), 1u);
}

TEST(AdmissionTest, CloseWakesEveryWaiterAndLiftsTheBound) {
  Admission a(2);
  ASSERT_EQ(a.TryAcquire(2), 2u);
  std::vector<std::thread> ts;
  std::atomic<size_t> got{0};
  for (int i = 0; i < 4; ++i) {
    ts.emplace_back([&] { got += a.Acquire(3, absl::InfiniteFuture()); });
  }
  ASSERT_TRUE(Eventually([&] { return a.waiting() == 4; }));
  a.Close();
  for (auto& t : ts) t.join();
  EXPECT_EQ(got.load(), 12u);  // each took all it asked for
  EXPECT_TRUE(a.closed());
  EXPECT_EQ(a.TryAcquire(1), 1u);
  a.Release(15);
  EXPECT_EQ(a.in_use(), 0u);
}

TEST(AdmissionTest, ManyThreadsNeverExceedTheLimit) {
  constexpr size_t kLimit = 4;
  Admission a(kLimit);
  std::atomic<size_t> held{0}, peak{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 8; ++i) {
    ts.emplace_back([&] {
      for (int k = 0; k < 2000; ++k) {
        const size_t n = a.Acquire(2, absl::Now() + absl::Seconds(10));
        ASSERT_GE(n, 1u);
        const size_t now = held += n;
        size_t p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        held -= n;
        a.Release(n);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_LE(peak.load(), kLimit);
  EXPECT_EQ(a.in_use(), 0u);
}

}  // namespace
}  // namespace procpool::internal
