// Out-of-range options: PoolOptions make Create() fail, MapOptions make a
// map yield the error as its only element, SubmitOptions resolve the future
// with it. Always kInvalidArgument, and nothing is started or queued.

#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
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

// ---- PoolOptions: ProcessPool::Create ----

absl::StatusCode CreateCode(const PoolOptions& options) {
  return ProcessPool::Create(options).status().code();
}

TEST(PoolOptionsTest, ANegativeMaxWorkersIsInvalid) {
  PoolOptions opts = Options();
  opts.max_workers = -1;
  EXPECT_EQ(CreateCode(opts), kInvalid);
}

TEST(PoolOptionsTest, AnUnknownBackendIsInvalid) {
  PoolOptions opts = Options();
  opts.backend = static_cast<PoolBackend>(7);
  EXPECT_EQ(CreateCode(opts), kInvalid);
}

TEST(PoolOptionsTest, AnUnknownWorkerDeathPolicyIsInvalid) {
  PoolOptions opts = Options();
  opts.on_worker_death = static_cast<WorkerDeathPolicy>(7);
  EXPECT_EQ(CreateCode(opts), kInvalid);
}

TEST(PoolOptionsTest, AnEmptyPluginPathIsInvalid) {
  PoolOptions opts = Options();
  opts.plugins.push_back("");
  EXPECT_EQ(CreateCode(opts), kInvalid);
}

TEST(PoolOptionsTest, AnInitializerWithAFingerprintButNoTaskIsInvalid) {
  PoolOptions opts = Options();
  opts.initializer.fingerprint = 42;
  EXPECT_EQ(CreateCode(opts), kInvalid);
}

TEST(PoolOptionsTest, AnInitializerWithArgumentsButNoTaskIsInvalid) {
  PoolOptions opts = Options();
  opts.initializer.args = "x";
  EXPECT_EQ(CreateCode(opts), kInvalid);
}

TEST(PoolOptionsTest, AZeroTaskTimeoutIsInvalid) {
  PoolOptions opts = Options();
  opts.task_timeout = absl::ZeroDuration();
  EXPECT_EQ(CreateCode(opts), kInvalid);
}

TEST(PoolOptionsTest, ANegativeTaskTimeoutIsInvalid) {
  PoolOptions opts = Options();
  opts.task_timeout = absl::Seconds(-1);
  EXPECT_EQ(CreateCode(opts), kInvalid);
}

TEST(PoolOptionsTest, NegativeRetriesAreInvalid) {
  PoolOptions opts = Options();
  opts.retries = -1;
  EXPECT_EQ(CreateCode(opts), kInvalid);
}

TEST(PoolOptionsTest, ANegativeKillGraceIsInvalid) {
  PoolOptions opts = Options();
  opts.kill_grace = absl::Milliseconds(-1);
  EXPECT_EQ(CreateCode(opts), kInvalid);
}

TEST(PoolOptionsTest, AnInfiniteKillGraceIsInvalid) {
  // A worker that ignores SIGTERM would never be stopped.
  PoolOptions opts = Options();
  opts.kill_grace = absl::InfiniteDuration();
  EXPECT_EQ(CreateCode(opts), kInvalid);
}

TEST(PoolOptionsTest, NegativeStderrTailLinesAreInvalid) {
  PoolOptions opts = Options();
  opts.stderr_tail_lines = -1;
  EXPECT_EQ(CreateCode(opts), kInvalid);
}

TEST(PoolOptionsTest, AZeroStartTimeoutIsInvalid) {
  PoolOptions opts = Options();
  opts.start_timeout = absl::ZeroDuration();
  EXPECT_EQ(CreateCode(opts), kInvalid);
}

TEST(PoolOptionsTest, AMaxFrameBytesTooSmallToCarryAMessageIsInvalid) {
  PoolOptions opts = Options();
  opts.max_frame_bytes = 16;
  EXPECT_EQ(CreateCode(opts), kInvalid);
}

TEST(PoolOptionsTest, AMaxFrameBytesBeyondTheFramesLengthFieldIsInvalid) {
  // A frame's length is 32 bits on the wire.
  PoolOptions opts = Options();
  opts.max_frame_bytes = size_t{1} << 32;
  EXPECT_EQ(CreateCode(opts), kInvalid);
}

TEST(PoolOptionsTest, AZeroMpiHeartbeatIntervalIsInvalid) {
  PoolOptions opts = Options();
  opts.mpi.heartbeat_interval = absl::ZeroDuration();
  EXPECT_EQ(CreateCode(opts), kInvalid);
}

TEST(PoolOptionsTest, ANegativeMpiAgentTimeoutIsInvalid) {
  PoolOptions opts = Options();
  opts.mpi.agent_timeout = absl::Seconds(-1);
  EXPECT_EQ(CreateCode(opts), kInvalid);
}

TEST(PoolOptionsTest, AnMpiAgentTimeoutNoLongerThanTheHeartbeatIsInvalid) {
  // Every idle agent would be declared lost between two heartbeats.
  PoolOptions opts = Options();
  opts.mpi.heartbeat_interval = absl::Seconds(1);
  opts.mpi.agent_timeout = absl::Seconds(1);
  EXPECT_EQ(CreateCode(opts), kInvalid);
}

TEST(PoolOptionsTest, ZeroWhereZeroHasAMeaningIsAccepted) {
  PoolOptions opts = Options();
  opts.max_workers = 0;  // one per hardware thread
  opts.kill_grace = absl::ZeroDuration();
  opts.stderr_tail_lines = 0;
  opts.shared_memory_min_bytes = 0;
  EXPECT_TRUE(ProcessPool::Create(opts).ok());
}

// ---- MapOptions: the map's only element ----

class MapOptionsTest : public ::testing::Test {
 protected:
  // What TryMap over 0..9 with `options` yields.
  std::vector<absl::StatusCode> TryMapCodes(const MapOptions& options) {
    std::vector<absl::StatusCode> codes;
    std::vector<int> xs(10, 1);
    for (const absl::StatusOr<int>& r : pool_.TryMap(options, noop_, xs)) {
      codes.push_back(r.status().code());
    }
    return codes;
  }

  const std::vector<absl::StatusCode> kOnlyInvalid = {kInvalid};
  ProcessPool pool_ = MakePool(Options());
  TaskHandle<int(int)> noop_ = Checked(pool_, math::kNoop);
  TaskHandle<int(int, int)> add_ = Checked(pool_, math::kAdd);
};

TEST_F(MapOptionsTest, ANegativeChunksizeIsInvalid) {
  EXPECT_EQ(TryMapCodes(MapOptions{.chunksize = -1}), kOnlyInvalid);
}

TEST_F(MapOptionsTest, AZeroTimeoutIsInvalid) {
  EXPECT_EQ(TryMapCodes(MapOptions{.timeout = absl::ZeroDuration()}),
            kOnlyInvalid);
}

TEST_F(MapOptionsTest, ANegativeTimeoutIsInvalid) {
  EXPECT_EQ(TryMapCodes(MapOptions{.timeout = absl::Seconds(-1)}), kOnlyInvalid);
}

TEST_F(MapOptionsTest, AZeroTaskTimeoutIsInvalid) {
  EXPECT_EQ(TryMapCodes(MapOptions{.task_timeout = absl::ZeroDuration()}),
            kOnlyInvalid);
}

TEST_F(MapOptionsTest, RetriesBelowMinusOneAreInvalid) {
  EXPECT_EQ(TryMapCodes(MapOptions{.retries = -2}), kOnlyInvalid);
}

TEST_F(MapOptionsTest, ProgressOnANegativeFdIsInvalid) {
  EXPECT_EQ(TryMapCodes(MapOptions{.progress = true, .progress_fd = -1}),
            kOnlyInvalid);
}

TEST_F(MapOptionsTest, MapThrowsTheErrorWhenIterated) {
  std::vector<int> xs(10, 1);
  auto results = pool_.Map(MapOptions{.chunksize = -1}, noop_, xs);
  try {
    for (int r : results) ADD_FAILURE() << "yielded " << r;
    FAIL() << "Map with invalid options ended without an error";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.code(), kInvalid);
  }
}

TEST_F(MapOptionsTest, MapUnorderedYieldsTheErrorAsItsOnlyElement) {
  std::vector<int> xs(10, 1);
  std::vector<absl::StatusCode> codes;
  for (const auto& item : pool_.MapUnordered(MapOptions{.chunksize = -1}, noop_, xs)) {
    codes.push_back(item.result.status().code());
  }
  EXPECT_EQ(codes, kOnlyInvalid);
}

TEST_F(MapOptionsTest, IstarmapThrowsTheErrorWhenIterated) {
  std::vector<std::tuple<int, int>> args(10, {1, 2});
  try {
    for (int r : pool_.Istarmap(add_, args, MapOptions{.chunksize = -1})) {
      ADD_FAILURE() << "yielded " << r;
    }
    FAIL() << "Istarmap with invalid options ended without an error";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.code(), kInvalid);
  }
}

TEST_F(MapOptionsTest, MapAllReturnsTheError) {
  std::vector<int> xs(10, 1);
  EXPECT_EQ(pool_.MapAll(MapOptions{.chunksize = -1}, noop_, xs).status().code(),
            kInvalid);
}

TEST_F(MapOptionsTest, StarmapReturnsTheError) {
  std::vector<std::tuple<int, int>> args(10, {1, 2});
  EXPECT_EQ(pool_.Starmap(add_, args, MapOptions{.retries = -2}).status().code(),
            kInvalid);
}

TEST_F(MapOptionsTest, AnInvalidMapQueuesNothing) {
  std::vector<int> xs(10, 1);
  ASSERT_EQ(TryMapCodes(MapOptions{.chunksize = -1}), kOnlyInvalid);
  EXPECT_EQ(pool_.Stats().submitted, 0u);
}

// ---- SubmitOptions: the future resolves with the error ----

class SubmitOptionsTest : public MapOptionsTest {};

TEST_F(SubmitOptionsTest, AZeroTimeoutIsInvalid) {
  Future<int> f =
      pool_.Submit(SubmitOptions{.timeout = absl::ZeroDuration()}, noop_, 1);
  EXPECT_EQ(f.Result(kWait).status().code(), kInvalid);
}

TEST_F(SubmitOptionsTest, ANegativeTimeoutIsInvalid) {
  Future<int> f =
      pool_.Submit(SubmitOptions{.timeout = absl::Seconds(-1)}, noop_, 1);
  EXPECT_EQ(f.Result(kWait).status().code(), kInvalid);
}

TEST_F(SubmitOptionsTest, RetriesBelowMinusOneAreInvalid) {
  Future<int> f = pool_.Submit(SubmitOptions{.retries = -2}, noop_, 1);
  EXPECT_EQ(f.Result(kWait).status().code(), kInvalid);
}

TEST_F(SubmitOptionsTest, SubmitThroughATaskRefChecksTheOptionsToo) {
  Future<int> f = pool_.Submit(SubmitOptions{.retries = -2}, math::kNoop, 1);
  EXPECT_EQ(f.Result(kWait).status().code(), kInvalid);
}

}  // namespace
}  // namespace procpool
