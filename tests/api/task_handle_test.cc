// A TaskHandle belongs to the pool that made it: used with another pool it
// is kInvalidArgument, whatever the other pool's plugins are, and even when
// that pool lives where the first one did.

#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "plugins/math/math.h"
#include "pool/pool.h"
#include "tests/api/test_env.h"

namespace procpool {
namespace {

using ::procpool::testing::Checked;
using ::procpool::testing::kWait;
using ::procpool::testing::MakePool;
using ::procpool::testing::Options;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

class TaskHandleTest : public ::testing::Test {
 protected:
  // Two pools with the same plugins, so the task has the same index in
  // both: only the handle's pool tells them apart.
  ProcessPool mine_ = MakePool(Options(1));
  ProcessPool other_ = MakePool(Options(1));
  TaskHandle<int(int, int)> foreign_add_ = Checked(other_, math::kAdd);
  std::vector<int> xs_ = {1, 2, 3};
};

TEST_F(TaskHandleTest, SubmitWithAnotherPoolsHandleResolvesInvalidArgument) {
  Future<int> f = mine_.Submit(foreign_add_, 1, 2);
  EXPECT_EQ(f.Result(kWait).status().code(), kInvalid);
}

TEST_F(TaskHandleTest, ApplyWithAnotherPoolsHandleReturnsInvalidArgument) {
  EXPECT_EQ(mine_.Apply(foreign_add_, 1, 2).status().code(), kInvalid);
}

TEST_F(TaskHandleTest, MapWithAnotherPoolsHandleThrowsInvalidArgument) {
  try {
    for (int r : mine_.Map(foreign_add_, xs_, xs_)) ADD_FAILURE() << r;
    FAIL() << "Map with another pool's handle ended without an error";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.code(), kInvalid);
  }
}

TEST_F(TaskHandleTest, TryMapWithAnotherPoolsHandleYieldsOnlyInvalidArgument) {
  std::vector<absl::StatusCode> codes;
  for (const absl::StatusOr<int>& r : mine_.TryMap(foreign_add_, xs_, xs_)) {
    codes.push_back(r.status().code());
  }
  EXPECT_EQ(codes, std::vector<absl::StatusCode>{kInvalid});
}

TEST_F(TaskHandleTest, MapAllWithAnotherPoolsHandleReturnsInvalidArgument) {
  EXPECT_EQ(mine_.MapAll(foreign_add_, xs_, xs_).status().code(), kInvalid);
}

TEST_F(TaskHandleTest, AHandleStillWorksWithItsOwnPool) {
  EXPECT_EQ(other_.Submit(foreign_add_, 1, 2).Get(kWait), 3);
}

TEST_F(TaskHandleTest, AHandleFollowsItsPoolWhenThePoolIsMoved) {
  ProcessPool moved = std::move(other_);
  EXPECT_EQ(moved.Submit(foreign_add_, 1, 2).Get(kWait), 3);
}

TEST(TaskHandleReuseTest, AHandleOfADestroyedPoolIsRefusedByItsSuccessor) {
  // The successor is made in the same storage, so a pool's address would
  // not tell the two apart.
  std::optional<ProcessPool> pool(MakePool(Options(1)));
  TaskHandle<int(int, int)> old_add = Checked(*pool, math::kAdd);
  pool.reset();
  pool.emplace(MakePool(Options(1)));
  EXPECT_EQ(pool->Submit(old_add, 1, 2).Result(kWait).status().code(),
            kInvalid);
}

}  // namespace
}  // namespace procpool
