// multiprocessing.Pool parity: apply, apply_async, map, starmap, istarmap,
// imap, imap_unordered, chunksize.

#include <atomic>
#include <map>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "plugins/faults/faults.h"
#include "plugins/math/math.h"
#include "pool/pool.h"
#include "tests/api/test_env.h"

namespace procpool {
namespace {

using ::procpool::testing::Checked;
using ::procpool::testing::MakePool;
using ::procpool::testing::Options;

class PoolParityTest : public ::testing::Test {
 protected:
  ProcessPool pool_ = MakePool(Options());
  TaskHandle<int(int, int)> add_ = Checked(pool_, math::kAdd);
  TaskHandle<int(int)> check_ = Checked(pool_, faults::kCheckNonNegative);
};

TEST_F(PoolParityTest, ApplyBlocksAndReturnsTheValue) {
  absl::StatusOr<int> r = pool_.Apply(add_, 40, 2);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 42);
}

TEST_F(PoolParityTest, ApplyReturnsTheTaskErrorWithoutThrowing) {
  absl::StatusOr<int> r = pool_.Apply(check_, -1);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnknown);
}

TEST_F(PoolParityTest, ApplyAsyncRunsCallbackOnSuccess) {
  absl::Notification called;
  int seen = 0;
  Future<int> f = pool_.ApplyAsync(
      add_, {1, 2}, [&](const int& v) { seen = v; called.Notify(); },
      [&](const absl::Status&) { ADD_FAILURE() << "error_callback on success"; });
  ASSERT_TRUE(called.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(seen, 3);
  EXPECT_EQ(f.Get(absl::Seconds(10)), 3);
}

TEST_F(PoolParityTest, ApplyAsyncRunsErrorCallbackOnFailure) {
  absl::Notification called;
  absl::StatusCode code = absl::StatusCode::kOk;
  pool_.ApplyAsync(
      check_, {-5}, [&](const int&) { ADD_FAILURE() << "callback on failure"; },
      [&](const absl::Status& s) { code = s.code(); called.Notify(); });
  ASSERT_TRUE(called.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(code, absl::StatusCode::kUnknown);
}

TEST_F(PoolParityTest, MapAllReturnsResultsInInputOrder) {
  std::vector<int> xs = {1, 2, 3, 4, 5}, ys = {10, 20, 30, 40, 50};
  absl::StatusOr<std::vector<int>> r = pool_.MapAll(add_, xs, ys);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, (std::vector<int>{11, 22, 33, 44, 55}));
}

TEST_F(PoolParityTest, MapAllReturnsTheFirstFailureByInputOrder) {
  std::vector<int> xs = {1, -2, 3, -4};
  absl::StatusOr<std::vector<int>> r = pool_.MapAll(check_, xs);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnknown);
  EXPECT_NE(r.status().message().find("input #1"), std::string::npos)
      << r.status();
}

TEST_F(PoolParityTest, StarmapTakesArgumentTuples) {
  std::vector<std::tuple<int, int>> args = {{1, 1}, {2, 2}, {3, 3}, {4, 4}};
  absl::StatusOr<std::vector<int>> r = pool_.Starmap(add_, args);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, (std::vector<int>{2, 4, 6, 8}));
}

TEST_F(PoolParityTest, StarmapTakesPairs) {
  std::vector<std::pair<int, int>> args = {{1, 2}, {3, 4}};
  absl::StatusOr<std::vector<int>> r = pool_.Starmap(add_, args);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, (std::vector<int>{3, 7}));
}

TEST_F(PoolParityTest, IstarmapIsLazyOverAnUnboundedInput) {
  auto pairs = std::views::iota(0) |
               std::views::transform([](int i) { return std::make_tuple(i, i); });
  std::vector<int> out;
  for (int r : pool_.Istarmap(add_, pairs, MapOptions{.window = 8})) {
    out.push_back(r);
    if (out.size() == 20) break;
  }
  ASSERT_EQ(out.size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(out[i], 2 * i);
}

TEST_F(PoolParityTest, ImapOverOneRangeKeepsOrder) {
  auto noop = Checked(pool_, math::kNoop);
  std::vector<int> in = {5, 4, 3, 2, 1};
  std::vector<int> out;
  for (int r : pool_.Imap(noop, in)) out.push_back(r);
  EXPECT_EQ(out, in);
}

TEST_F(PoolParityTest, ImapUnorderedYieldsEveryIndexOnceWithItsArgument) {
  auto noop = Checked(pool_, math::kNoop);
  std::vector<int> in = {7, 8, 9, 10};
  std::set<size_t> seen;
  for (const auto& item : pool_.ImapUnordered(noop, in)) {
    ASSERT_TRUE(item.result.ok());
    EXPECT_EQ(*item.result, in[item.index]);
    EXPECT_EQ(std::get<0>(item.args), in[item.index]);
    EXPECT_TRUE(seen.insert(item.index).second);
  }
  EXPECT_EQ(seen.size(), in.size());
}

TEST_F(PoolParityTest, ExplicitChunksizeGivesTheSameResults) {
  std::vector<int> xs(1000), ys(1000);
  for (int i = 0; i < 1000; ++i) xs[i] = ys[i] = i;
  for (int chunk : {1, 7, 100, 5000}) {
    absl::StatusOr<std::vector<int>> r =
        pool_.MapAll(MapOptions{.chunksize = chunk}, add_, xs, ys);
    ASSERT_TRUE(r.ok()) << r.status();
    for (int i = 0; i < 1000; ++i) ASSERT_EQ((*r)[i], 2 * i) << "chunk " << chunk;
  }
}

TEST_F(PoolParityTest, AutomaticBatchingHandlesManyTinyTasks) {
  constexpr int kN = 200000;
  int64_t sum = 0;
  int i = 0;
  for (int r : pool_.Map(add_, std::views::iota(0, kN), std::views::iota(0, kN))) {
    ASSERT_EQ(r, 2 * i);
    sum += r;
    ++i;
  }
  EXPECT_EQ(i, kN);
  EXPECT_EQ(sum, int64_t{kN} * (kN - 1));
}

}  // namespace
}  // namespace procpool
