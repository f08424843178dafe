// PoolOptions::shared_memory_min_bytes: large arguments and results cross
// through each worker's shared memory regions instead of the socket. The
// bytes must arrive exactly, whichever way they travel; a region holds one
// message at a time (the rest falls back to the socket); a result left in
// a region stays valid after its worker died; limits and errors behave as
// on the socket.

#include <signal.h>
#include <sys/syscall.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "pool/pool.h"
#include "tests/testdata/probe.h"
#include "tests/testing/pool_fixture.h"

namespace procpool {
namespace {

using ::procpool::testing::kWait;
using ::procpool::testing::PoolTest;
using ::procpool::testing::StatusWithin;
using ::procpool::testing::TestPoolOptions;

constexpr size_t kMin = size_t{256} << 10;  // the default threshold

// Bytes that differ at every position and between calls, so that a stale
// or misplaced region shows.
std::string Pattern(size_t size, uint32_t seed) {
  std::string s(size, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < size; ++i) {
    x = x * 1664525u + 1013904223u;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

// The same, printable and without NULs (an exception's what() is a C
// string).
std::string Text(size_t size, uint32_t seed) {
  std::string s = Pattern(size, seed);
  for (char& c : s) c = static_cast<char>('a' + static_cast<unsigned char>(c) % 26);
  return s;
}

// Compares without printing megabytes when they differ.
::testing::AssertionResult Same(const std::string& got, const std::string& want) {
  if (got == want) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  return ::testing::AssertionFailure()
         << "got " << got.size() << " bytes, want " << want.size()
         << "; first difference at byte " << i;
}

// True while process `pid` waits in pause(2) (in glibc, the pause system
// call where there is one, else ppoll).
bool InPause(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/syscall");
  long nr = -1;
  if (!(f >> nr)) return false;
#ifdef SYS_pause
  return nr == SYS_pause;
#else
  return nr == SYS_ppoll;
#endif
}

class SharedMemoryTest : public PoolTest {
 protected:
  void SetUp() override { StartPool(TestPoolOptions(/*workers=*/1)); }
  uint64_t ArgsViaRegion() { return pool().Stats().shared_memory_args; }
  uint64_t ResultsViaRegion() { return pool().Stats().shared_memory_results; }
};

TEST_F(SharedMemoryTest, LargePayloadsArriveExactlyAroundTheThreshold) {
  auto identity = Task(math::kIdentity);
  uint32_t seed = 0;
  for (size_t size : {kMin - 64, kMin - 8, kMin, kMin + 1, size_t{1} << 20,
                      (size_t{16} << 20) + 3, size_t{1000}}) {
    std::string in = Pattern(size, ++seed);
    EXPECT_TRUE(Same(pool().Submit(identity, in).Get(kWait), in)) << size << " bytes";
  }
  // The archive of a string is 8 bytes longer than the string: every call
  // from kMin - 8 up went through the regions, both ways.
  EXPECT_EQ(ArgsViaRegion(), 5u);
  EXPECT_EQ(ResultsViaRegion(), 5u);
}

TEST_F(SharedMemoryTest, RepeatedCallsReuseTheRegionsWithFreshBytes) {
  auto identity = Task(math::kIdentity);
  for (uint32_t i = 0; i < 20; ++i) {
    // Shrinking and growing sizes: a stale tail would show.
    std::string in = Pattern(kMin + (i % 3) * 100'000 + i, i);
    ASSERT_TRUE(Same(pool().Submit(identity, in).Get(kWait), in)) << "call " << i;
  }
  EXPECT_EQ(ArgsViaRegion(), 20u);
  EXPECT_EQ(ResultsViaRegion(), 20u);
}

TEST_F(SharedMemoryTest, AnUndecodedResultKeepsTheRegionAndTheNextTakesTheSocket) {
  auto huge = Task(faults::kHuge);
  Future<std::string> held = pool().Submit(huge, int64_t{1} << 20);
  ASSERT_TRUE(held.WaitFor(kWait));
  EXPECT_EQ(ResultsViaRegion(), 1u);
  // `held` still owns the region: this result must come by the socket.
  EXPECT_EQ(pool().Submit(huge, int64_t{2} << 20).Get(kWait).size(), size_t{2} << 20);
  EXPECT_EQ(ResultsViaRegion(), 1u);
  EXPECT_EQ(held.Get(kWait).size(), size_t{1} << 20);
  // Decoding let the region go: the next large result uses it again.
  EXPECT_EQ(pool().Submit(huge, int64_t{1} << 20).Get(kWait).size(), size_t{1} << 20);
  EXPECT_EQ(ResultsViaRegion(), 2u);
}

TEST_F(SharedMemoryTest, AnAnswerWrittenOverItsArgumentsKeepsThemUntilDecoded) {
  // A large identity answer goes back over the pages its argument came in
  // (kRegionResultInCall). While it is undecoded, the next large call must
  // not be written there: it takes the socket, and its answer the result
  // region; both answers arrive intact.
  auto identity = Task(math::kIdentity);
  std::string first = Pattern(size_t{2} << 20, 21);
  Future<std::string> held = pool().Submit(identity, first);
  ASSERT_TRUE(held.WaitFor(kWait));
  EXPECT_EQ(ArgsViaRegion(), 1u);
  EXPECT_EQ(ResultsViaRegion(), 1u);
  std::string second = Pattern(size_t{2} << 20, 22);
  EXPECT_TRUE(Same(pool().Submit(identity, second).Get(kWait), second));
  EXPECT_EQ(ArgsViaRegion(), 1u);
  EXPECT_EQ(ResultsViaRegion(), 2u);
  EXPECT_TRUE(Same(held.Get(kWait), first));
  // Decoded: the call region takes arguments again, and answers.
  for (uint32_t k = 0; k < 3; ++k) {
    std::string next = Pattern((size_t{1} << 20) + 4096 * k, 23 + k);
    EXPECT_TRUE(Same(pool().Submit(identity, next).Get(kWait), next)) << k;
  }
  EXPECT_EQ(ArgsViaRegion(), 4u);
  EXPECT_EQ(ResultsViaRegion(), 5u);
}

TEST_F(SharedMemoryTest, AnAnswerLargerThanTheCallRegionTakesTheResultRegion) {
  // An argument archive of exactly 1 MiB (8 bytes of length + the message)
  // gets a call region of 1 MiB; the exception's archive (type + message)
  // is larger, so it cannot go back over the argument and must arrive
  // through the result region instead, intact.
  std::string message = Text((size_t{1} << 20) - 8, 32);
  Future<int> f = pool().Submit(Task(faults::kThrow), message);
  absl::Status s = StatusWithin(f);
  ASSERT_EQ(s.code(), absl::StatusCode::kUnknown) << s;
  ASSERT_TRUE(f.Exception().has_value());
  EXPECT_TRUE(Same(f.Exception()->exception_what(), message));
  EXPECT_EQ(ArgsViaRegion(), 1u);
  EXPECT_EQ(ResultsViaRegion(), 1u);
  std::string next = Pattern(size_t{1} << 20, 33);
  EXPECT_TRUE(Same(pool().Submit(Task(math::kIdentity), next).Get(kWait), next));
}

TEST_F(SharedMemoryTest, ADroppedFutureLetsTheRegionGo) {
  auto huge = Task(faults::kHuge);
  {
    Future<std::string> dropped = pool().Submit(huge, int64_t{1} << 20);
    ASSERT_TRUE(dropped.WaitFor(kWait));
  }
  EXPECT_EQ(pool().Submit(huge, int64_t{1} << 20).Get(kWait).size(), size_t{1} << 20);
  EXPECT_EQ(ResultsViaRegion(), 2u);
}

TEST_F(SharedMemoryTest, AResultInTheRegionOutlivesItsWorker) {
  auto identity = Task(math::kIdentity);
  std::string in = Pattern(size_t{3} << 20, 7);
  Future<std::string> held = pool().Submit(identity, in);
  ASSERT_TRUE(held.WaitFor(kWait));
  // Kill the worker that wrote it; its replacement has regions of its own.
  EXPECT_FALSE(StatusWithin(pool().Submit(Task(faults::kSegfault), 1)).ok());
  std::string next = Pattern(size_t{2} << 20, 8);
  EXPECT_TRUE(Same(pool().Submit(identity, next).Get(kWait), next));
  EXPECT_EQ(ResultsViaRegion(), 2u);
  EXPECT_TRUE(Same(held.Get(kWait), in));
}

TEST_F(SharedMemoryTest, ALargeExceptionMessageArrives) {
  std::string message = Text(size_t{1} << 20, 9);
  Future<int> f = pool().Submit(Task(faults::kThrow), message);
  absl::Status s = StatusWithin(f);
  ASSERT_EQ(s.code(), absl::StatusCode::kUnknown) << s;
  ASSERT_TRUE(f.Exception().has_value());
  EXPECT_TRUE(Same(f.Exception()->exception_what(), message));
  EXPECT_EQ(ResultsViaRegion(), 1u);
  // The region was freed at once (errors are read when they arrive).
  EXPECT_EQ(pool().Submit(Task(faults::kHuge), int64_t{1} << 20).Get(kWait).size(), size_t{1} << 20);
  EXPECT_EQ(ResultsViaRegion(), 2u);
}

TEST_F(SharedMemoryTest, AMapOfLargeItems) {
  std::vector<std::string> items;
  for (uint32_t i = 0; i < 12; ++i) items.push_back(Pattern(kMin + 4096 * i, 100 + i));
  size_t i = 0;
  for (const std::string& r : pool().Map(Task(math::kIdentity), items)) {
    ASSERT_LT(i, items.size());
    EXPECT_TRUE(Same(r, items[i])) << "item " << i;
    ++i;
  }
  EXPECT_EQ(i, items.size());
  EXPECT_GT(ArgsViaRegion(), 0u);
  EXPECT_GT(ResultsViaRegion(), 0u);
}

TEST_F(SharedMemoryTest, OneItemChunksAnswerOverTheirArguments) {
  // A map with chunksize 1 sends each large item as a chunk of one, through
  // the call region; its answer (chunk header included) goes back over
  // the item's arguments as it is written, never through the worker's
  // heap or the result region.
  std::vector<std::string> items;
  for (uint32_t i = 0; i < 6; ++i) items.push_back(Pattern((size_t{1} << 20) * (1 + i % 3), 40 + i));
  MapOptions opts;
  opts.chunksize = 1;
  size_t i = 0;
  for (const std::string& r : pool().Map(opts, Task(math::kIdentity), items)) {
    ASSERT_LT(i, items.size());
    EXPECT_TRUE(Same(r, items[i])) << "item " << i;
    ++i;
  }
  EXPECT_EQ(i, items.size());
  // The map keeps several chunks in the worker's window; the call region
  // holds one call at a time, the others take the socket.
  EXPECT_GT(ArgsViaRegion(), 0u);
  EXPECT_GE(ResultsViaRegion(), ArgsViaRegion());
}

TEST_F(SharedMemoryTest, AOneItemChunksAnswerLargerThanItsArgumentsStillArrives) {
  // Each exception's archive (type + message) is larger than the call
  // region its argument came in: the answer written over the arguments
  // comes back to the worker's frame part way and then takes the result
  // region, its chunk header intact.
  std::vector<std::string> messages;
  for (uint32_t i = 0; i < 3; ++i) messages.push_back(Text((size_t{1} << 20) - 8, 50 + i));
  MapOptions opts;
  opts.chunksize = 1;
  size_t i = 0;
  for (const absl::StatusOr<int>& r : pool().TryMap(opts, Task(faults::kThrow), messages)) {
    ASSERT_LT(i, messages.size());
    ASSERT_EQ(r.status().code(), absl::StatusCode::kUnknown) << r.status();
    EXPECT_NE(r.status().message().find(messages[i].substr(0, 64)), std::string::npos);
    ++i;
  }
  EXPECT_EQ(i, messages.size());
  EXPECT_GT(ArgsViaRegion(), 0u);
  EXPECT_GE(ResultsViaRegion(), ArgsViaRegion());
  std::string next = Pattern(size_t{1} << 20, 60);
  EXPECT_TRUE(Same(pool().Submit(Task(math::kIdentity), next).Get(kWait), next));
}

TEST_F(SharedMemoryTest, ALargeCallItsWorkerNeverStartedIsSentAgainIntact) {
  // A call that cannot run twice (no retries) is held only in the worker's
  // call region once written there. Its worker is killed while the call
  // waits behind a hung one: the call goes to the replacement, its
  // arguments taken back from the dead worker's region, intact.
  // Quick calls first: a worker whose tasks are known to be short gets a
  // second call while it runs the first.
  for (int i = 0; i < 8; ++i) ASSERT_EQ(pool().Submit(Task(math::kAdd), i, 1).Get(kWait), i + 1);
  const std::string hang = ::testing::TempDir() + "/hang_here";
  ASSERT_EQ(pool().Submit(Task(probe::kTouch), hang).Get(kWait), 1);
  // Strings of 2 MiB name no file: those items come back as they went.
  std::vector<std::string> items = {hang, Text(size_t{2} << 20, 70), Text(size_t{2} << 20, 71)};
  MapOptions opts;
  opts.chunksize = 1;
  // Kill the worker once it runs the first item and holds the second,
  // unstarted, in its call region.
  std::thread killer([&] {
    const absl::Time deadline = absl::Now() + kWait;
    const std::vector<int> pids = pool().WorkerPids();
    ASSERT_EQ(pids.size(), 1u);
    while ((ArgsViaRegion() == 0 || !InPause(pids[0])) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    ::kill(pids[0], SIGKILL);
  });
  std::vector<absl::StatusCode> codes;
  size_t i = 0;
  for (const absl::StatusOr<std::string>& r :
       pool().TryMap(opts, Task(probe::kEchoUnlessExists), items)) {
    codes.push_back(r.status().code());
    if (r.ok()) {
      EXPECT_TRUE(Same(*r, items[i])) << "item " << i;
    }
    ++i;
  }
  killer.join();
  EXPECT_EQ(codes, (std::vector<absl::StatusCode>{absl::StatusCode::kAborted, absl::StatusCode::kOk,
                                                  absl::StatusCode::kOk}));
  EXPECT_GE(ArgsViaRegion(), 2u);  // once to the dead worker, then again
  std::string next = Pattern(size_t{1} << 20, 72);
  EXPECT_TRUE(Same(pool().Submit(Task(math::kIdentity), next).Get(kWait), next));
}

TEST_F(SharedMemoryTest, ThreadsSubmittingLargeCallsAtOnce) {
  StartPool(TestPoolOptions(/*workers=*/2));
  auto identity = Task(math::kIdentity);
  std::vector<std::thread> threads;
  std::vector<int> wrong(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (uint32_t k = 0; k < 8; ++k) {
        std::string in = Pattern(kMin + 1000 * k + t, 1000 * t + k);
        absl::StatusOr<std::string> out = pool().Submit(identity, in).Result(kWait);
        if (!out.ok() || *out != in) ++wrong[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(wrong[t], 0) << "thread " << t;
  EXPECT_GT(ArgsViaRegion(), 0u);
}

TEST(SharedMemoryOptionsTest, ZeroTurnsItOff) {
  testing::Watchdog watchdog(absl::Seconds(60));
  PoolOptions options = TestPoolOptions(1);
  options.shared_memory_min_bytes = 0;
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  std::string in = Pattern(size_t{2} << 20, 3);
  EXPECT_TRUE(Same(pool->Submit(testing::MustTask(*pool, math::kIdentity), in).Get(kWait), in));
  EXPECT_EQ(pool->Stats().shared_memory_args, 0u);
  EXPECT_EQ(pool->Stats().shared_memory_results, 0u);
}

TEST(SharedMemoryOptionsTest, AResultOverTheFrameLimitFailsAndFreesTheRegion) {
  testing::Watchdog watchdog(absl::Seconds(60));
  PoolOptions options = TestPoolOptions(1);
  options.max_frame_bytes = size_t{1} << 20;
  options.shared_memory_min_bytes = size_t{64} << 10;
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  auto huge = testing::MustTask(*pool, faults::kHuge);
  Future<std::string> over = pool->Submit(huge, int64_t{2} << 20);
  absl::Status s = StatusWithin(over);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnknown) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "over the frame limit")) << s;
  EXPECT_EQ(pool->Submit(huge, int64_t{512} << 10).Get(kWait).size(), size_t{512} << 10);
  EXPECT_EQ(pool->Stats().shared_memory_results, 1u);
}

}  // namespace
}  // namespace procpool
