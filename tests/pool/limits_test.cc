// PoolOptions::limits: hard limits per worker. A task that allocates
// without end, one that spins, and one that opens files without end each
// fail alone with kResourceExhausted naming the limit and what was
// observed; the worker is replaced and the next task on the pool succeeds.
// Memory through a memory cgroup (skipped, saying why, where this process
// cannot make one) and through RLIMIT_DATA; every test with the sandbox
// off and on. Prints "[figure]" lines for docs/RELIABILITY.md.

#include <dirent.h>
#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pool/internal/limits.h"
#include "pool/internal/sandbox_policy.h"
#include "pool/internal/sanitizers.h"
#include "tests/testing/pool_fixture.h"

namespace procpool {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::kWait;
using testing::MustTask;
using testing::StatusWithin;
using testing::TestPoolOptions;
using testing::Watchdog;

constexpr uint64_t kMemoryLimit = uint64_t{64} << 20;

constexpr bool kTsan = internal::kThreadSanitizer;

// UndefinedBehaviorSanitizer (in the asan config) checks a thrown
// exception's type through a pipe, which a full descriptor table denies:
// it then reports a false error and ends the worker.
constexpr bool kUbsan = internal::kAddressSanitizer;

ProcessPool MustCreate(PoolOptions o) {
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(std::move(o));
  if (!pool.ok()) throw std::runtime_error(pool.status().ToString());
  return *std::move(pool);
}

int Restarts(const ProcessPool& pool) {
  int n = 0;
  for (const WorkerStats& w : pool.Stats().workers) n += w.restarts;
  return n;
}

// The task's error, then: its worker was replaced, 20 tasks submitted
// alongside it all succeeded, and the next task succeeds.
template <class Sig, class... A>
absl::Status CrossAndCheckThePoolGoesOn(ProcessPool& pool, TaskRef<Sig> ref, A... args) {
  const int restarts = Restarts(pool);
  const absl::Time start = absl::Now();
  auto bad = pool.Submit(MustTask(pool, ref), args...);
  std::vector<Future<int>> good;
  for (int i = 0; i < 20; ++i) good.push_back(pool.Submit(MustTask(pool, math::kAdd), i, 1));
  const absl::Status s = StatusWithin(bad, absl::Seconds(60));
  std::cout << "[figure] " << ref.name() << ": error after "
            << absl::FormatDuration(absl::Now() - start) << ": " << s.message() << "\n";
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<int> r = good[i].Result(kWait);
    EXPECT_TRUE(r.ok()) << r.status();
    if (r.ok()) {
      EXPECT_EQ(*r, i + 1);
    }
  }
  EXPECT_TRUE(testing::WaitUntil([&] { return Restarts(pool) == restarts + 1; }))
      << "the worker that crossed the limit was not replaced";
  absl::StatusOr<int> next = pool.Submit(MustTask(pool, math::kAdd), 2, 3).Result(kWait);
  EXPECT_TRUE(next.ok()) << next.status();
  return s;
}

class LimitsTest : public ::testing::TestWithParam<bool> {
 protected:
  PoolOptions Options() const {
    PoolOptions o = TestPoolOptions(2);
    o.sandbox = GetParam();
    o.retries = 2;  // a limit is not retried, whatever this says
    return o;
  }
  Watchdog watchdog_{absl::Minutes(4)};
};

TEST_P(LimitsTest, AMemoryCgroupStopsATaskThatAllocatesWithoutEnd) {
  PoolOptions o = Options();
  o.limits.memory_bytes = kMemoryLimit;
  o.limits.memory_mechanism = MemoryLimitMechanism::kCgroup;
  absl::StatusOr<ProcessPool> created = ProcessPool::Create(o);
  if (!created.ok() && created.status().code() == absl::StatusCode::kFailedPrecondition) {
    GTEST_SKIP() << "this machine lets this process make no memory cgroup: "
                 << created.status();
  }
  ASSERT_TRUE(created.ok()) << created.status();
  ProcessPool& pool = *created;
  EXPECT_THAT(pool.Stats().limits, HasSubstr("memory 64 MiB (memory cgroup v"));
  const absl::Status s = CrossAndCheckThePoolGoesOn(pool, probe::kAllocateForever, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_THAT(s.message(), HasSubstr("crossed its memory limit of 64 MiB "
                                     "(PoolOptions::limits.memory_bytes, memory cgroup"));
  EXPECT_THAT(s.message(), HasSubstr("peak "));
  EXPECT_THAT(s.message(), HasSubstr("OOM killer"));
  EXPECT_THAT(s.message(), HasSubstr("allocate_forever"));
  EXPECT_THAT(s.message(), Not(HasSubstr("poison")));
}

TEST_P(LimitsTest, RlimitDataStopsATaskThatAllocatesWithoutEnd) {
  if (internal::SandboxSanitizerBuild()) {
    GTEST_SKIP() << "RLIMIT_DATA counts the sanitizer's shadow memory reservations, "
                    "terabytes before the first task";
  }
  PoolOptions o = Options();
  o.limits.memory_bytes = kMemoryLimit;
  o.limits.memory_mechanism = MemoryLimitMechanism::kRlimit;
  ProcessPool pool = MustCreate(o);
  EXPECT_EQ(pool.Stats().limits, "memory 64 MiB (RLIMIT_DATA)");
  const absl::Status s = CrossAndCheckThePoolGoesOn(pool, probe::kAllocateForever, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_THAT(s.message(), HasSubstr("crossed its memory limit of 64 MiB "
                                     "(PoolOptions::limits.memory_bytes, RLIMIT_DATA): "
                                     "an allocation failed with"));
  EXPECT_THAT(s.message(), Not(HasSubstr("poison")));
}

TEST_P(LimitsTest, ACpuLimitStopsATaskThatSpins) {
  PoolOptions o = Options();
  o.limits.cpu_per_task = absl::Milliseconds(300);
  ProcessPool pool = MustCreate(o);
  EXPECT_EQ(pool.Stats().limits, "CPU 300ms per task (a CPU-time timer, SIGXCPU)");
  // Tasks before it used some CPU: the limit is per task.
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(pool.Submit(MustTask(pool, math::kAdd), i, 1).Result(kWait).ok());
  }
  const absl::Status s = CrossAndCheckThePoolGoesOn(pool, probe::kSpinForever, 7);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_THAT(s.message(), HasSubstr("crossed its CPU limit of 300ms per task "
                                     "(PoolOptions::limits.cpu_per_task): "));
  // ThreadSanitizer defers signal handlers to its interceptors: there the
  // signal's default action ends the worker, and the pool names it.
  EXPECT_THAT(s.message(), HasSubstr(kTsan ? "killed by SIGXCPU" : "the task had used 3"));
  EXPECT_THAT(s.message(), HasSubstr("spin_forever"));
}

TEST_P(LimitsTest, AnOpenFilesLimitStopsATaskThatOpensWithoutEnd) {
  PoolOptions o = Options();
  o.limits.open_files = 64;
  ProcessPool pool = MustCreate(o);
  EXPECT_EQ(pool.Stats().limits, "open files 64 (RLIMIT_NOFILE)");
  for (bool close_all : {false, true}) {
    SCOPED_TRACE(close_all ? "closes them before it throws" : "keeps them");
    if (kUbsan && !close_all) continue;  // see kUbsan
    const absl::Status s =
        CrossAndCheckThePoolGoesOn(pool, probe::kOpenFilesForever, close_all);
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
    EXPECT_THAT(s.message(), HasSubstr("crossed its limit of 64 open files "
                                       "(PoolOptions::limits.open_files, RLIMIT_NOFILE)"));
  }
}

TEST_P(LimitsTest, AllLimitsTogetherLeaveOrdinaryTasksAlone) {
  PoolOptions o = Options();
  o.limits.memory_bytes = kMemoryLimit;
  o.limits.cpu_per_task = absl::Seconds(2);
  o.limits.open_files = 64;
  ProcessPool pool = MustCreate(o);
  std::vector<int> a(2000), b(2000);
  for (int i = 0; i < 2000; ++i) a[i] = b[i] = i;
  absl::StatusOr<std::vector<int>> r = pool.MapAll(MustTask(pool, math::kAdd), a, b);
  ASSERT_TRUE(r.ok()) << r.status();
  for (int i = 0; i < 2000; ++i) ASSERT_EQ((*r)[i], 2 * i);
  EXPECT_EQ(Restarts(pool), 0);
}

TEST_P(LimitsTest, ALimitNeverBreaksThePoolEvenWithKBreakPool) {
  PoolOptions o = Options();
  o.limits.open_files = 64;
  o.on_worker_death = WorkerDeathPolicy::kBreakPool;
  ProcessPool pool = MustCreate(o);
  const absl::Status s = CrossAndCheckThePoolGoesOn(pool, probe::kOpenFilesForever, true);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_THAT(s.message(), Not(HasSubstr("BrokenPool")));
}

// Workers forked from the template (StartMethod::kZygote) get the same
// limits: their memory cgroup is made once the fork's pid is known, and
// they set their own limits after the fork.
TEST_P(LimitsTest, LimitsHoldInWorkersForkedFromTheTemplate) {
  PoolOptions o = Options();
  o.start_method = StartMethod::kZygote;
  o.limits.memory_bytes = kMemoryLimit;
  o.limits.cpu_per_task = absl::Milliseconds(300);
  o.limits.open_files = 64;
  ProcessPool pool = MustCreate(o);
  EXPECT_THAT(pool.Stats().start_method, HasSubstr("zygote"));
  for (absl::Status s : {CrossAndCheckThePoolGoesOn(pool, probe::kAllocateForever, 1),
                         CrossAndCheckThePoolGoesOn(pool, probe::kSpinForever, 1),
                         CrossAndCheckThePoolGoesOn(pool, probe::kOpenFilesForever, true)}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
    EXPECT_THAT(s.message(), HasSubstr("crossed its "));
  }
}

INSTANTIATE_TEST_SUITE_P(SandboxOffAndOn, LimitsTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "Sandboxed" : "Plain";
                         });

// The pool's memory cgroups are gone once it is destroyed.
TEST(LimitsCleanupTest, NoMemoryCgroupIsLeftAfterThePool) {
  Watchdog watchdog(absl::Minutes(2));
  absl::StatusOr<std::pair<std::string, internal::MemoryCgroup::Version>> own =
      internal::OwnMemoryCgroup();
  if (!own.ok()) GTEST_SKIP() << own.status();
  auto ours = [&] {
    std::vector<std::string> names;
    if (DIR* d = ::opendir(own->first.c_str())) {
      while (dirent* e = ::readdir(d)) {
        if (absl::StartsWith(e->d_name, absl::StrCat("procpool-", ::getpid(), "-"))) {
          names.push_back(e->d_name);
        }
      }
      ::closedir(d);
    }
    return names;
  };
  {
    PoolOptions o = TestPoolOptions(2);
    o.limits.memory_bytes = kMemoryLimit;
    absl::StatusOr<ProcessPool> pool = ProcessPool::Create(o);
    ASSERT_TRUE(pool.ok()) << pool.status();
    if (pool->Stats().limits.find("cgroup") == std::string::npos) {
      GTEST_SKIP() << "no memory cgroup here: " << pool->Stats().limits;
    }
    EXPECT_EQ(ours().size(), 1u);
    EXPECT_EQ(StatusWithin(pool->Submit(MustTask(*pool, probe::kAllocateForever), 1),
                           absl::Seconds(60))
                  .code(),
              absl::StatusCode::kResourceExhausted);
  }
  EXPECT_THAT(ours(), ::testing::IsEmpty());
  for (const testing::ChildProcessInfo& c : testing::ChildProcesses()) {
    EXPECT_NE(c.state, 'Z') << "zombie " << c.pid;
  }
}

TEST(LimitsOptionsTest, LimitsOutOfRangeAreRefusedNamingTheField) {
  auto code_and_message = [](PoolOptions o) { return ProcessPool::Create(o).status(); };
  PoolOptions o = TestPoolOptions(1);
  o.limits.memory_bytes = 1 << 20;
  absl::Status s = code_and_message(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("PoolOptions::limits.memory_bytes is 1048576"));

  o = TestPoolOptions(1);
  o.limits.cpu_per_task = absl::Milliseconds(5);
  s = code_and_message(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("PoolOptions::limits.cpu_per_task is 5ms"));

  o = TestPoolOptions(1);
  o.limits.open_files = 3;
  s = code_and_message(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("PoolOptions::limits.open_files is 3"));

  o = TestPoolOptions(1);
  o.limits.memory_mechanism = static_cast<MemoryLimitMechanism>(7);
  s = code_and_message(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("PoolOptions::limits.memory_mechanism"));

  o = TestPoolOptions(1);
  o.backend = PoolBackend::kMpi;
  o.limits.open_files = 64;
  s = code_and_message(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("PoolOptions::limits"));
}

TEST(LimitsOptionsTest, AnOpenFilesLimitBelowWhatTheWorkerHoldsFailsCreate) {
  PoolOptions o = TestPoolOptions(1);
  o.limits.open_files = 16;
  o.shared_memory_min_bytes = 1024;
  // 16 is accepted by the range check; whether a worker fits under it
  // depends on what its plugins opened. Either it starts, or Create()
  // fails naming the limit.
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(o);
  if (!pool.ok()) {
    EXPECT_THAT(pool.status().message(), HasSubstr("PoolOptions::limits.open_files is 16"));
  }
}

// The words of a crossing, from what a worker's exit shows (pure).
TEST(DescribeLimitCrossingTest, NamesTheLimitAndWhatWasObserved) {
  WorkerLimits l;
  l.memory_bytes = kMemoryLimit;
  l.cpu_per_task = absl::Seconds(2);
  l.open_files = 64;
  internal::LimitFacts f;
  EXPECT_EQ(internal::DescribeLimitCrossing(l, "RLIMIT_DATA", f), "");
  f.signal = 9;  // killed, but not by the OOM killer
  EXPECT_EQ(internal::DescribeLimitCrossing(l, "memory cgroup v1", f), "");
  f.oom_kills = 1;
  f.cgroup_peak = kMemoryLimit;
  EXPECT_EQ(internal::DescribeLimitCrossing(l, "memory cgroup v1", f),
            "crossed its memory limit of 64 MiB (PoolOptions::limits.memory_bytes, memory "
            "cgroup v1): peak 64 MiB, killed by the kernel's OOM killer");
  f = {};
  f.crossed = internal::LimitKind::kCpu;
  f.observed = 2'004'000'000;
  EXPECT_EQ(internal::DescribeLimitCrossing(l, "RLIMIT_DATA", f),
            "crossed its CPU limit of 2s per task (PoolOptions::limits.cpu_per_task): the "
            "task had used 2.004s of CPU");
  f.crossed = internal::LimitKind::kOpenFiles;
  f.observed = 64;
  EXPECT_THAT(internal::DescribeLimitCrossing(l, "RLIMIT_DATA", f),
              HasSubstr("all 64 descriptors were in use"));
  l = {};
  f = {};
  f.signal = 24;  // SIGXCPU without a CPU limit: not a limit
  EXPECT_EQ(internal::DescribeLimitCrossing(l, "", f), "");
}

}  // namespace
}  // namespace procpool
