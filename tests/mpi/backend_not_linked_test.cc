// PoolBackend::kMpi in a program that does not link //pool:mpi: a clear
// error, never a crash (and //pool alone does not link libmpi).

#include "gtest/gtest.h"
#include "pool/pool.h"
#include "tests/testing/pool_fixture.h"

namespace procpool::testing {
namespace {

TEST(BackendOptionTest, MpiBackendWithoutPoolMpiIsFailedPrecondition) {
  PoolOptions opts = TestPoolOptions(1);
  opts.backend = PoolBackend::kMpi;
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(opts);
  ASSERT_FALSE(pool.ok());
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kFailedPrecondition)
      << pool.status();
}

TEST(BackendOptionTest, TheLocalBackendIsTheDefault) {
  EXPECT_EQ(PoolOptions().backend, PoolBackend::kLocal);
}

}  // namespace
}  // namespace procpool::testing
