// Many threads using one pool at once: Submit from 8 threads, Maps on
// several threads, and crashes while others submit.

#include <signal.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "pool/pool.h"
#include "tests/testing/pool_fixture.h"

namespace procpool {
namespace {

using ::procpool::testing::kWait;
using ::procpool::testing::PoolTest;
using ::procpool::testing::StatusWithin;

using ConcurrentSubmitTest = PoolTest;

TEST_F(ConcurrentSubmitTest,
       EightThreadsSubmittingFiveHundredTasksEachGetCorrectResults) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 500;
  const TaskHandle<int(int, int)> add = Task(math::kAdd);
  std::vector<std::vector<Future<int>>> futures(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        futures[t].push_back(pool().Submit(add, t * 100'000, i));
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<size_t> indices;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(futures[t].size(), static_cast<size_t>(kPerThread));
    for (int i = 0; i < kPerThread; ++i) {
      absl::StatusOr<int> r = futures[t][i].Result(kWait);
      ASSERT_TRUE(r.ok()) << "thread " << t << " task " << i << ": "
                          << r.status();
      ASSERT_EQ(*r, t * 100'000 + i);
      indices.insert(futures[t][i].index());
    }
  }
  EXPECT_EQ(indices.size(), static_cast<size_t>(kThreads * kPerThread))
      << "submission indices must be unique";
}

TEST_F(ConcurrentSubmitTest, ThreadsWaitingOnTheirOwnFuturesAllFinish) {
  const TaskHandle<int(int, int)> add = Task(math::kAdd);
  std::atomic<int> correct{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        if (pool().Submit(add, t, i).Result(kWait).value_or(-1) == t + i)
          ++correct;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(correct.load(), 800);
}

TEST_F(ConcurrentSubmitTest,
       MapsOnSeveralThreadsEachGetTheirOwnResultsInOrder) {
  const TaskHandle<int(int, int)> add = Task(math::kAdd);
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<int> xs(300), ys(300, t * 1000);
      for (int i = 0; i < 300; ++i) xs[i] = i;
      int i = 0;
      bool ok = true;
      for (int r : pool().Map(add, xs, ys)) ok = ok && r == t * 1000 + i++;
      if (ok && i == 300) ++good;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), 4);
}

TEST_F(ConcurrentSubmitTest,
       CrashesWhileOtherThreadsSubmitFailOnlyTheCrashingTasks) {
  const TaskHandle<int(int, int)> add = Task(math::kAdd);
  const TaskHandle<int(int)> segfault = Task(faults::kSegfault);
  std::vector<std::vector<Future<int>>> adds(4);
  std::vector<Future<int>> crashes;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) adds[t].push_back(pool().Submit(add, t, i));
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < 5; ++i) crashes.push_back(pool().Submit(segfault, i));
  });
  for (auto& th : threads) th.join();
  for (auto& f : crashes) {
    EXPECT_EQ(StatusWithin(f).code(), absl::StatusCode::kAborted);
  }
  for (int t = 0; t < 4; ++t) {
    for (int i = 0; i < 200; ++i) {
      absl::StatusOr<int> r = adds[t][i].Result(kWait);
      ASSERT_TRUE(r.ok()) << "thread " << t << " add " << i << ": "
                          << r.status();
      EXPECT_EQ(*r, t + i);
    }
  }
}

// SIGPIPE, recorded instead of ending the process, so that the test can
// report it.
std::atomic<int> sigpipes{0};
void CountSigpipe(int) { sigpipes.fetch_add(1); }

TEST_F(ConcurrentSubmitTest,
       WorkerCrashesUnderSteadySubmissionsNeverSignalThisProcess) {
  // While tasks stream in, the pool writes to workers that may have just
  // died. That must fail the write (EPIPE), not raise SIGPIPE in the
  // process that owns the pool: by default SIGPIPE would end it.
  struct sigaction count {
  }, previous{};
  count.sa_handler = &CountSigpipe;
  sigemptyset(&count.sa_mask);
  ASSERT_EQ(::sigaction(SIGPIPE, &count, &previous), 0);
  sigpipes = 0;

  const TaskHandle<int(int, int)> add = Task(math::kAdd);
  const TaskHandle<int(int)> segfault = Task(faults::kSegfault);
  std::atomic<bool> stop{false};
  std::vector<Future<int>> adds;
  std::thread submitter([&] {
    while (!stop.load() && adds.size() < 100'000) {
      adds.push_back(pool().Submit(add, 1, 1));
    }
  });
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(StatusWithin(pool().Submit(segfault, i)).code(),
              absl::StatusCode::kAborted);
  }
  stop = true;
  submitter.join();
  for (auto& f : adds) ASSERT_EQ(f.Get(kWait), 2);
  ::sigaction(SIGPIPE, &previous, nullptr);
  EXPECT_EQ(sigpipes.load(), 0) << "the pool's process received SIGPIPE";
}

}  // namespace
}  // namespace procpool
