// Per-task time limits, stopping running tasks, retries and poison tasks,
// TryMap, and the Python-style waits with timeouts.

#include <unistd.h>

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

class ControlTest : public ::testing::Test {
 protected:
  // Tests leave hanging tasks behind: end them (the destructor would wait).
  void TearDown() override { pool_.Terminate(); }

  ProcessPool pool_ = MakePool(Options());
  TaskHandle<int(int)> hang_ = Checked(pool_, faults::kHang);
  TaskHandle<int(int)> sleep_ = Checked(pool_, faults::kSleepMs);
  TaskHandle<int(int, int)> add_ = Checked(pool_, math::kAdd);
};

TEST_F(ControlTest, TaskTimeoutFailsAHungTaskWithResourceExhausted) {
  absl::Time start = absl::Now();
  Future<int> f = pool_.Submit(SubmitOptions{.timeout = absl::Milliseconds(200)},
                               hang_, 0);
  absl::StatusOr<int> r = f.Result(absl::Seconds(10));
  absl::Duration took = absl::Now() - start;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_GE(took, absl::Milliseconds(200));
  EXPECT_LT(took, absl::Seconds(5));  // generous bound: a bug would hang
}

TEST_F(ControlTest, WorkerIsReplacedAfterADeadlineAndThePoolGoesOn) {
  std::vector<int> before = pool_.WorkerPids();
  Future<int> f = pool_.Submit(SubmitOptions{.timeout = absl::Milliseconds(50)},
                               hang_, 0);
  ASSERT_EQ(f.Result(absl::Seconds(10)).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(pool_.Submit(add_, 2, 3).Get(absl::Seconds(10)), 5);
  // The future fails at the deadline; the worker is replaced just after.
  EXPECT_TRUE(Eventually([&] {
    std::vector<int> now = pool_.WorkerPids();
    return now.size() == 2 && now != before;
  }));
}

TEST_F(ControlTest, TasksQueuedBehindATimedOutTaskStillSucceed) {
  PoolOptions opts = Options(1);
  ProcessPool pool = MakePool(opts);
  auto hang = Checked(pool, faults::kHang);
  auto add = Checked(pool, math::kAdd);
  Future<int> stuck =
      pool.Submit(SubmitOptions{.timeout = absl::Milliseconds(100)}, hang, 0);
  std::vector<Future<int>> behind;
  for (int i = 0; i < 5; ++i) behind.push_back(pool.Submit(add, i, i));
  EXPECT_EQ(stuck.Result(absl::Seconds(10)).status().code(),
            absl::StatusCode::kResourceExhausted);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(behind[i].Get(absl::Seconds(10)), 2 * i);
}

TEST_F(ControlTest, PoolWideTaskTimeoutAppliesToEveryTask) {
  PoolOptions opts = Options(1);
  opts.task_timeout = absl::Milliseconds(100);
  ProcessPool pool = MakePool(opts);
  auto hang = Checked(pool, faults::kHang);
  EXPECT_EQ(pool.Submit(hang, 0).Result(absl::Seconds(10)).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(ControlTest, TerminateStopsARunningTask) {
  Future<int> f = pool_.Submit(hang_, 0);
  // Wait until a worker is running it.
  ASSERT_TRUE(Eventually([&] { return pool_.Stats().in_flight == 1; }));
  absl::SleepFor(absl::Milliseconds(20));  // let the worker pick it up
  EXPECT_TRUE(f.Terminate());
  absl::StatusOr<int> r = f.Result(absl::Seconds(10));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled) << r.status();
  EXPECT_TRUE(f.Cancelled());
  EXPECT_EQ(pool_.Submit(add_, 1, 1).Get(absl::Seconds(10)), 2);
}

TEST_F(ControlTest, CancelOfAFinishedTaskReturnsFalse) {
  Future<int> f = pool_.Submit(add_, 1, 1);
  ASSERT_EQ(f.Get(absl::Seconds(10)), 2);
  EXPECT_FALSE(f.Cancel());
  EXPECT_FALSE(f.Cancelled());
}

TEST_F(ControlTest, RetriesRerunATaskWhoseWorkerDied) {
  std::string marker = std::string(std::getenv("TEST_TMPDIR")) + "/crash_once";
  ::unlink(marker.c_str());
  auto crash_first = Checked(pool_, faults::kCrashFirstTime);
  Future<int> f = pool_.Submit(SubmitOptions{.retries = 1}, crash_first, marker);
  absl::StatusOr<int> r = f.Result(absl::Seconds(20));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 1);
}

TEST_F(ControlTest, APoisonTaskIsReportedWithEveryCrashAndNotRetriedAgain) {
  auto segv = Checked(pool_, faults::kSegfault);
  Future<int> f = pool_.Submit(SubmitOptions{.retries = 2}, segv, 7);
  absl::StatusOr<int> r = f.Result(absl::Seconds(30));
  ASSERT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
  std::string m(r.status().message());
  EXPECT_TRUE(absl::StrContains(m, "poison task")) << m;
  EXPECT_TRUE(absl::StrContains(m, "killed 3 workers")) << m;
  EXPECT_TRUE(absl::StrContains(m, "[3]")) << m;
  EXPECT_TRUE(absl::StrContains(m, "SIGSEGV")) << m;
  PoolStats stats = pool_.Stats();
  int restarts = 0;
  for (const WorkerStats& w : stats.workers) restarts += w.restarts;
  EXPECT_EQ(restarts, 3);
}

TEST_F(ControlTest, TryMapContinuesPastFailuresAndCrashes) {
  auto crash_on = Checked(pool_, faults::kCrashOn);
  std::vector<int> xs = {0, 1, 2, 3, 4, 5};
  std::vector<int> bad(xs.size(), 3);
  std::vector<absl::StatusCode> codes;
  std::vector<int> values;
  for (const absl::StatusOr<int>& r : pool_.TryMap(crash_on, xs, bad)) {
    codes.push_back(r.status().code());
    values.push_back(r.ok() ? *r : -1);
  }
  ASSERT_EQ(codes.size(), 6u);
  EXPECT_EQ(codes[3], absl::StatusCode::kAborted);
  EXPECT_EQ(values, (std::vector<int>{0, 1, 2, -1, 4, 5}));
}

TEST_F(ControlTest, MapTimeoutThrowsDeadlineExceededLikePython) {
  std::vector<int> ms = {1, 5000, 1};
  auto range = pool_.Map(MapOptions{.timeout = absl::Milliseconds(200)}, sleep_, ms);
  auto it = range.begin();
  EXPECT_EQ(*it, 1);
  try {
    ++it;
    (void)*it;
    ADD_FAILURE() << "expected a timeout";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.code(), absl::StatusCode::kDeadlineExceeded);
  }
}

TEST_F(ControlTest, TryMapTimeoutYieldsDeadlineExceededForLateItems) {
  std::vector<int> ms = {1, 5000};
  std::vector<absl::StatusCode> codes;
  for (const auto& r :
       pool_.TryMap(MapOptions{.timeout = absl::Milliseconds(200)}, sleep_, ms)) {
    codes.push_back(r.status().code());
    if (codes.size() > 2) break;
  }
  ASSERT_GE(codes.size(), 2u);
  EXPECT_EQ(codes[0], absl::StatusCode::kOk);
  EXPECT_EQ(codes[1], absl::StatusCode::kDeadlineExceeded);
}

TEST_F(ControlTest, PerItemTaskTimeoutInAMap) {
  std::vector<int> ms = {1, 100000, 2};
  std::vector<absl::StatusCode> codes;
  for (const auto& r : pool_.TryMap(
           MapOptions{.task_timeout = absl::Milliseconds(100)}, sleep_, ms)) {
    codes.push_back(r.status().code());
  }
  EXPECT_EQ(codes, (std::vector<absl::StatusCode>{
                       absl::StatusCode::kOk, absl::StatusCode::kResourceExhausted,
                       absl::StatusCode::kOk}));
}

TEST_F(ControlTest, FutureExceptionIsEmptyOnSuccessAndCarriesTheError) {
  auto check = Checked(pool_, faults::kCheckNonNegative);
  Future<int> ok = pool_.Submit(check, 1);
  Future<int> bad = pool_.Submit(check, -1);
  ASSERT_TRUE(ok.WaitFor(absl::Seconds(10)));
  ASSERT_TRUE(bad.WaitFor(absl::Seconds(10)));
  EXPECT_FALSE(ok.Exception().has_value());
  ASSERT_TRUE(bad.Exception().has_value());
  EXPECT_EQ(bad.Exception()->exception_type(), "std::invalid_argument");
}

TEST_F(ControlTest, GetWithTimeoutThrowsDeadlineExceededAndTheTaskGoesOn) {
  Future<int> f = pool_.Submit(sleep_, 300);
  try {
    f.Get(absl::Milliseconds(10));
    ADD_FAILURE() << "expected a timeout";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.code(), absl::StatusCode::kDeadlineExceeded);
  }
  EXPECT_EQ(f.Get(absl::Seconds(10)), 300);
}

TEST_F(ControlTest, AsCompletedWithTimeoutThrowsWhenFuturesArePending) {
  std::vector<Future<int>> fs = {pool_.Submit(sleep_, 1), pool_.Submit(sleep_, 5000)};
  int seen = 0;
  try {
    for (const auto& done : AsCompleted(fs, absl::Milliseconds(300))) {
      EXPECT_EQ(done.index, 0u);
      ++seen;
    }
    ADD_FAILURE() << "expected a timeout";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.code(), absl::StatusCode::kDeadlineExceeded);
  }
  EXPECT_EQ(seen, 1);
  fs[1].Cancel();
}

}  // namespace
}  // namespace procpool
