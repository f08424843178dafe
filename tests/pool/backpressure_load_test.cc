// The backpressure load of issue 16, bounded to 3 s: 8 producer threads
// submit as fast as they can into a pool of 2 workers whose tasks sleep
// 1 ms each (the producers alone submit far faster: see the unbounded run
// of //bench:backpressure_bench), and 1 task in 100 segfaults its worker.
// With PoolOptions::max_pending = 64: every task resolves exactly once with
// its own outcome, and the caller's RSS stays flat. The latency figures are
// printed, not asserted (docs/RELIABILITY.md quotes them).

#include <cstdio>

#include "gtest/gtest.h"
#include "pool/internal/backend.h"
#include "pool/pool.h"
#include "tests/testing/backpressure_load.h"
#include "tests/testing/pool_fixture.h"

namespace procpool {
namespace {

using ::procpool::testing::LoadOptions;
using ::procpool::testing::LoadResult;
using ::procpool::testing::PoolTest;
using ::procpool::testing::RunBackpressureLoad;
using ::procpool::testing::TestPoolOptions;

class BackpressureLoadTest : public PoolTest {
 protected:
  void SetUp() override {
    PoolOptions o = TestPoolOptions(2);
    o.max_pending = 64;
    o.forward_worker_stderr = false;  // a hundred crashes' worth of noise
    StartPool(o);
  }
};

TEST_F(BackpressureLoadTest, EightProducersIntoASlowCrashingPoolLoseNothingAndStayFlat) {
  LoadOptions lo;
  lo.duration = absl::Seconds(3);
  const LoadResult r = RunBackpressureLoad(pool(), lo);
  std::printf("backpressure load: %s\n", r.Summary().c_str());
  ASSERT_GT(r.submitted, 500u);
  EXPECT_TRUE(r.drained) << r.Summary();
  EXPECT_EQ(r.resolved, r.submitted) << r.Summary();
  EXPECT_EQ(r.resolved_twice, 0u) << r.Summary();
  EXPECT_EQ(r.wrong, 0u) << r.Summary();
  EXPECT_EQ(r.cancelled, 0u) << r.Summary();
  // Tasks #99, #199, ... crash; each fails alone with kAborted.
  EXPECT_EQ(r.crashed, r.submitted / 100) << r.Summary();
  EXPECT_EQ(r.succeeded, r.submitted - r.crashed) << r.Summary();
  // Flat: the pool holds at most 64 tasks; what grows is allocator noise.
  EXPECT_GE(r.rss_samples, 10);
  EXPECT_LT(r.rss_growth_mib, 16.0) << r.Summary();
  EXPECT_EQ(pool().core_for_internal_use().admission()->in_use(), 0u);
}

}  // namespace
}  // namespace procpool
