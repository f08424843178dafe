// PoolOptions::max_frame_bytes: "Largest frame either side accepts; a
// result over it fails its task." Whatever crosses the limit, every future
// must still resolve and the pool must keep serving.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "pool/pool.h"
#include "tests/testing/pool_fixture.h"

namespace procpool {
namespace {

using ::procpool::testing::kWait;
using ::procpool::testing::PoolTest;
using ::procpool::testing::StatusWithin;
using ::procpool::testing::TestPoolOptions;

constexpr size_t kLimit = 64 * 1024;
// Every task here takes microseconds; 5 s means it will never finish.
constexpr absl::Duration kFrameWait = absl::Seconds(5);

class FrameLimitTest : public PoolTest {
 protected:
  void SetUp() override {
    PoolOptions options = TestPoolOptions();
    options.max_frame_bytes = kLimit;
    StartPool(options);
  }
  // Lets the pool measure that tasks are tiny, so that it batches them.
  void WarmUp() {
    std::vector<int> xs(2000, 1);
    for (int r : pool().Map(Task(math::kNoop), xs)) ASSERT_EQ(r, 1);
  }
};

TEST_F(FrameLimitTest, AResultUnderTheLimitArrives) {
  EXPECT_EQ(pool().Submit(Task(faults::kHuge), 1000).Get(kWait).size(), 1000u);
}

TEST_F(FrameLimitTest, AResultOverTheLimitFailsItsTask) {
  absl::Status s = StatusWithin(pool().Submit(Task(faults::kHuge), 4 * kLimit));
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.code(), absl::StatusCode::kDeadlineExceeded)
      << "it never resolved";
}

TEST_F(FrameLimitTest, ThePoolKeepsServingAfterAResultOverTheLimit) {
  ASSERT_FALSE(
      StatusWithin(pool().Submit(Task(faults::kHuge), 4 * kLimit)).ok());
  EXPECT_EQ(pool().Submit(Task(math::kAdd), 1, 2).Get(kWait), 3);
}

TEST_F(FrameLimitTest, ArgumentsOverTheLimitFailTheirTaskInsteadOfHanging) {
  Future<std::string> f =
      pool().Submit(Task(math::kIdentity), std::string(2 * kLimit, 'a'));
  absl::Status s = StatusWithin(f, kFrameWait);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.code(), absl::StatusCode::kDeadlineExceeded)
      << "it never resolved";
  EXPECT_EQ(pool().Submit(Task(math::kAdd), 1, 2).Get(kWait), 3);
}

TEST_F(FrameLimitTest, ManySmallArgumentsTogetherOverTheLimitAllRun) {
  // Each call is well under the limit; a batch of them is not. A Map
  // queues its window at once, so the pool may batch it.
  WarmUp();
  std::vector<std::string> words(64, std::string(kLimit / 8, 'b'));
  size_t i = 0;
  for (const absl::StatusOr<std::string>& r :
       pool().TryMap(MapOptions{.window = 64, .timeout = kFrameWait},
                     Task(math::kIdentity), words)) {
    ASSERT_TRUE(r.ok()) << "#" << i << ": " << r.status();
    EXPECT_EQ(r->size(), kLimit / 8);
    ++i;
  }
  EXPECT_EQ(i, words.size());
}

TEST_F(FrameLimitTest, ManySmallResultsTogetherOverTheLimitAllArrive) {
  // Each result is well under the limit; a batch of them is not.
  WarmUp();
  std::vector<int64_t> sizes(64, static_cast<int64_t>(kLimit / 8));
  size_t i = 0;
  for (const absl::StatusOr<std::string>& r :
       pool().TryMap(MapOptions{.window = 64, .timeout = kFrameWait},
                     Task(faults::kHuge), sizes)) {
    ASSERT_TRUE(r.ok()) << "#" << i << ": " << r.status();
    EXPECT_EQ(r->size(), kLimit / 8);
    ++i;
  }
  EXPECT_EQ(i, sizes.size());
}

}  // namespace
}  // namespace procpool
