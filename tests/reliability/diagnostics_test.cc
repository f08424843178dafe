// Crash diagnostics and bad input that reaches a worker: every failure is a
// clear status on the one task concerned, and the pool keeps serving.

#include <signal.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "plugins/faults/faults.h"
#include "plugins/math/math.h"
#include "pool/internal/backend.h"
#include "pool/pool.h"
#include "tests/testdata/probe.h"
#include "tests/api/test_env.h"

namespace procpool {
namespace {

using ::procpool::testing::Checked;
using ::procpool::testing::Eventually;
using ::procpool::testing::MakePool;
using ::procpool::testing::Options;

PoolOptions Quiet(int workers = 2) {
  PoolOptions opts = Options(workers);
  opts.forward_worker_stderr = false;
  return opts;
}

TEST(DiagnosticsTest, CrashErrorCarriesSignalPidTaskIndexAndStderrTail) {
  ProcessPool pool = MakePool(Quiet(1));
  auto noop = Checked(pool, math::kNoop);
  auto crash = Checked(pool, faults::kChatterThenCrash);
  // Give the crashing task a non-zero submission index.
  ASSERT_EQ(pool.Submit(noop, 1).Get(absl::Seconds(10)), 1);
  int pid = pool.WorkerPids().at(0);
  absl::StatusOr<int> r = pool.Submit(crash, 12).Result(absl::Seconds(10));
  ASSERT_EQ(r.status().code(), absl::StatusCode::kAborted);
  std::string m(r.status().message());
  EXPECT_TRUE(absl::StrContains(m, "SIGSEGV")) << m;
  EXPECT_TRUE(absl::StrContains(m, absl::StrCat("worker pid ", pid))) << m;
  EXPECT_TRUE(absl::StrContains(m, "'chatter_then_crash'")) << m;
  EXPECT_TRUE(absl::StrContains(m, "input #1")) << m;
  // The tail keeps the last 8 lines, not the first ones.
  EXPECT_TRUE(absl::StrContains(m, "chatter line 12")) << m;
  EXPECT_TRUE(absl::StrContains(m, "chatter line 5")) << m;
  EXPECT_FALSE(absl::StrContains(m, "chatter line 4\n")) << m;
}

TEST(DiagnosticsTest, SigkillOfABusyWorkerFailsItsTaskPromptly) {
  PoolOptions opts = Quiet(1);
  opts.plugins.push_back(*FindRunfile("tests/testdata/libprobe.so"));
  ProcessPool pool = MakePool(opts);
  auto hang = Checked(pool, probe::kAnnounceAndHang);
  const std::string announce = std::string(std::getenv("TEST_TMPDIR")) + "/running";
  Future<int> f = pool.Submit(hang, announce);
  // The task writes its worker's pid once it runs.
  int pid = 0;
  ASSERT_TRUE(Eventually([&] {
    std::ifstream in(announce);
    return in && (in >> pid) && pid > 0;
  }));
  absl::Time killed = absl::Now();
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  absl::StatusOr<int> r = f.Result(absl::Seconds(10));
  absl::Duration took = absl::Now() - killed;
  ASSERT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "SIGKILL")) << r.status();
  std::printf("SIGKILL to failed future: %.3f ms\n", absl::ToDoubleMilliseconds(took));
  EXPECT_LT(took, absl::Seconds(2));  // loose: the figure above is what counts
}

TEST(DiagnosticsTest, ExitCodeIsNamed) {
  ProcessPool pool = MakePool(Quiet(1));
  auto exit = Checked(pool, faults::kExit);
  absl::StatusOr<int> r = pool.Submit(exit, 7).Result(absl::Seconds(10));
  ASSERT_EQ(r.status().code(), absl::StatusCode::kAborted);
  EXPECT_TRUE(absl::StrContains(r.status().message(), "exited with code 7"))
      << r.status();
}

TEST(DiagnosticsTest, GarbageOnTheSocketFailsTheTaskWithAProtocolError) {
  ProcessPool pool = MakePool(Quiet(1));
  auto scribble = Checked(pool, faults::kScribble);
  auto add = Checked(pool, math::kAdd);
  absl::StatusOr<int> r = pool.Submit(scribble, 1).Result(absl::Seconds(10));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "protocol error"))
      << r.status();
  // The worker was replaced; the pool goes on.
  EXPECT_EQ(pool.Submit(add, 2, 2).Get(absl::Seconds(10)), 4);
}

TEST(DiagnosticsTest, ResultOverTheFrameLimitFailsClearlyAndTheWorkerGoesOn) {
  PoolOptions opts = Quiet(1);
  opts.max_frame_bytes = 1 << 20;
  ProcessPool pool = MakePool(opts);
  auto huge = Checked(pool, faults::kHuge);
  auto add = Checked(pool, math::kAdd);
  int pid = pool.WorkerPids().at(0);
  absl::StatusOr<std::string> r = pool.Submit(huge, 4 << 20).Result(absl::Seconds(10));
  ASSERT_EQ(r.status().code(), absl::StatusCode::kUnknown) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "over the frame limit"))
      << r.status();
  EXPECT_EQ(pool.Submit(add, 1, 2).Get(absl::Seconds(10)), 3);
  EXPECT_EQ(pool.WorkerPids().at(0), pid);  // not wedged, not replaced
}

TEST(DiagnosticsTest, ArgumentsThatDoNotDecodeAreInvalidArgument) {
  ProcessPool pool = MakePool(Quiet(1));
  auto add = Checked(pool, math::kAdd);
  internal::Backend& core = pool.core_for_internal_use();
  absl::StatusOr<uint32_t> index = core.FindTask(
      "add", Signature<int(int, int)>::Fingerprint(), "int(int, int)");
  ASSERT_TRUE(index.ok());
  auto state = std::make_shared<internal::TypedTaskState<int>>(*index, 0);
  state->args() = "\x01";  // one byte where two ints belong
  core.Enqueue(state);
  Future<int> f(state);
  absl::StatusOr<int> r = f.Result(absl::Seconds(10));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "'add'")) << r.status();
  EXPECT_EQ(pool.Submit(add, 1, 2).Get(absl::Seconds(10)), 3);
}

TEST(DiagnosticsTest, ForwardedStderrIsPrefixedWithTheWorker) {
  ProcessPool pool = MakePool(Options(1));
  auto chatter = Checked(pool, faults::kChatter);
  int pid = pool.WorkerPids().at(0);
  ::testing::internal::CaptureStderr();
  ASSERT_EQ(pool.Submit(chatter, 5).Get(absl::Seconds(10)), 5);
  // A task's stderr is forwarded before its future resolves.
  std::string expected = absl::StrCat("[procpool worker 0 pid ", pid,
                                      "] chatter: working on 5");
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_TRUE(absl::StrContains(err, expected)) << err;
}

}  // namespace
}  // namespace procpool
