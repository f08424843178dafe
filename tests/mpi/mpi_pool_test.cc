// The MPI backend end to end: run under mpirun with 3 ranks (rank 0 runs
// these tests, ranks 1 and 2 are node agents). See tests/mpi/BUILD for the
// launches (shared memory, TCP, and --enable-recovery for agent loss).

#include <signal.h>
#include <sys/types.h>

#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <ranges>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "plugins/faults/faults.h"
#include "plugins/math/math.h"
#include "pool/mpi.h"
#include "pool/pool.h"
#include "tests/testdata/probe.h"
#include "tests/testing/pool_fixture.h"

namespace procpool::testing {
namespace {

PoolOptions MpiPoolOptions(int workers_per_agent = 1) {
  PoolOptions opts;
  opts.backend = PoolBackend::kMpi;
  opts.max_workers = workers_per_agent;
  opts.plugins = {MathPlugin(), FaultsPlugin()};
  opts.start_timeout = kWait;
  opts.forward_worker_stderr = false;
  // Generous: a loaded CI machine must not make a live agent look lost.
  opts.mpi.agent_timeout = absl::Seconds(30);
  return opts;
}

ProcessPool MustCreate(PoolOptions opts) {
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(std::move(opts));
  if (!pool.ok()) {
    ADD_FAILURE() << pool.status();
    std::abort();
  }
  return *std::move(pool);
}

class MpiPoolTest : public ::testing::Test {
 protected:
  Watchdog watchdog_{absl::Seconds(120)};
};

TEST_F(MpiPoolTest, EveryAgentRankStartsALocalPool) {
  ProcessPool pool = MustCreate(MpiPoolOptions(1));
  std::vector<mpi::AgentInfo> agents = mpi::Agents(pool);
  ASSERT_EQ(agents.size(), 2u);
  for (const mpi::AgentInfo& a : agents) {
    EXPECT_TRUE(a.ready) << a.rank;
    EXPECT_FALSE(a.lost) << a.rank;
    EXPECT_EQ(a.workers, 1);
    EXPECT_GT(a.pid, 0);
  }
  EXPECT_EQ(pool.num_workers(), 2);
  bool has_add = false;
  for (const TaskDescription& t : pool.Tasks()) has_add = has_add || t.name == "add";
  EXPECT_TRUE(has_add) << "the agents' manifests list the plugins' tasks";
}

TEST_F(MpiPoolTest, ResultsEqualTheLocalBackends) {
  std::vector<int> xs(400), ys(400);
  std::iota(xs.begin(), xs.end(), -200);
  for (size_t i = 0; i < ys.size(); ++i) ys[i] = static_cast<int>(i * i % 97);

  std::vector<int> local_results, mpi_results;
  {
    PoolOptions opts = MpiPoolOptions(2);
    opts.backend = PoolBackend::kLocal;
    ProcessPool local = MustCreate(opts);
    auto add = MustTask(local, math::kAdd);
    for (int r : local.Map(add, xs, ys)) local_results.push_back(r);
  }
  ProcessPool pool = MustCreate(MpiPoolOptions(1));
  auto add = MustTask(pool, math::kAdd);
  for (int r : pool.Map(add, xs, ys)) mpi_results.push_back(r);
  EXPECT_EQ(mpi_results, local_results);

  absl::StatusOr<std::vector<int>> all = pool.MapAll(add, xs, ys);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, local_results);

  std::set<size_t> seen;
  for (const auto& item : pool.MapUnordered(add, xs, ys)) {
    ASSERT_TRUE(item.result.ok()) << item.result.status();
    EXPECT_EQ(*item.result, local_results[item.index]);
    seen.insert(item.index);
  }
  EXPECT_EQ(seen.size(), xs.size());

  // Both agents took part.
  for (const mpi::AgentInfo& a : mpi::Agents(pool)) EXPECT_GT(a.tasks_done, 0u) << a.rank;
}

TEST_F(MpiPoolTest, SubmitAndAsCompletedWork) {
  ProcessPool pool = MustCreate(MpiPoolOptions(1));
  auto add = MustTask(pool, math::kAdd);
  std::vector<Future<int>> futures;
  for (int i = 0; i < 20; ++i) futures.push_back(pool.Submit(add, i, 1000));
  std::set<size_t> seen;
  for (const Completed<int>& done : AsCompleted(futures, kWait)) {
    EXPECT_EQ(done.future.Get(), static_cast<int>(done.index) + 1000);
    seen.insert(done.index);
  }
  EXPECT_EQ(seen.size(), futures.size());
  EXPECT_EQ(pool.Apply(add, 2, 3).value(), 5);
}

TEST_F(MpiPoolTest, ATaskExceptionKeepsItsTypeAndMessage) {
  ProcessPool pool = MustCreate(MpiPoolOptions(1));
  auto check = MustTask(pool, faults::kCheckNonNegative);
  Future<int> f = pool.Submit(check, -1);
  ASSERT_TRUE(f.WaitFor(kWait));
  EXPECT_EQ(f.status().code(), absl::StatusCode::kUnknown) << f.status();
  std::optional<TaskError> e = f.Exception();
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(absl::StrContains(e->exception_type(), "invalid_argument"))
      << e->exception_type();
  EXPECT_EQ(pool.Submit(check, 4).Get(kWait), 4);
}

TEST_F(MpiPoolTest, APluginCrashOnARemoteWorkerFailsOneTaskAndTheRunGoesOn) {
  ProcessPool pool = MustCreate(MpiPoolOptions(1));
  auto crash_on = MustTask(pool, faults::kCrashOn);
  std::vector<int> xs(40);
  std::iota(xs.begin(), xs.end(), 0);
  std::vector<int> sevens(40, 7);
  size_t index = 0, failures = 0;
  for (const absl::StatusOr<int>& r : pool.TryMap(crash_on, xs, sevens)) {
    if (index == 7) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
      EXPECT_TRUE(absl::StrContains(r.status().message(), "MPI rank")) << r.status();
      ++failures;
    } else {
      ASSERT_TRUE(r.ok()) << index << ": " << r.status();
      EXPECT_EQ(*r, static_cast<int>(index));
    }
    ++index;
  }
  EXPECT_EQ(index, xs.size());
  EXPECT_EQ(failures, 1u);
  // The agent replaced its worker; no agent was lost.
  auto add = MustTask(pool, math::kAdd);
  EXPECT_EQ(pool.Submit(add, 1, 2).Get(kWait), 3);
  for (const mpi::AgentInfo& a : mpi::Agents(pool)) EXPECT_FALSE(a.lost) << a.rank;
}

TEST_F(MpiPoolTest, ChunkedMapItemsKeepTheirOwnOutcomes) {
  ProcessPool pool = MustCreate(MpiPoolOptions(1));
  MapOptions chunked;
  chunked.chunksize = 8;
  // A crash inside a chunk fails that item alone.
  auto crash_on = MustTask(pool, faults::kCrashOn);
  std::vector<int> xs(64);
  std::iota(xs.begin(), xs.end(), 0);
  std::vector<int> crash_at(64, 21);
  size_t index = 0;
  for (const absl::StatusOr<int>& r : pool.TryMap(chunked, crash_on, xs, crash_at)) {
    if (index == 21) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
    } else {
      ASSERT_TRUE(r.ok()) << index << ": " << r.status();
      EXPECT_EQ(*r, static_cast<int>(index));
    }
    ++index;
  }
  EXPECT_EQ(index, xs.size());
  // Exceptions inside chunks keep their type.
  auto check = MustTask(pool, faults::kCheckNonNegative);
  std::vector<int> signs(64);
  for (int i = 0; i < 64; ++i) signs[i] = i % 5 == 0 ? -i - 1 : i;
  index = 0;
  for (const absl::StatusOr<int>& r : pool.TryMap(chunked, check, signs)) {
    if (index % 5 == 0) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kUnknown) << r.status();
      EXPECT_TRUE(TaskError(r.status()).exception_type().find("invalid_argument") !=
                  std::string::npos)
          << r.status();
    } else {
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(*r, static_cast<int>(index));
    }
    ++index;
  }
  EXPECT_EQ(index, signs.size());
  EXPECT_EQ(pool.Stats().failed, 1u + 13u);
}

TEST_F(MpiPoolTest, ATaskTimeoutStopsTheRemoteTask) {
  ProcessPool pool = MustCreate(MpiPoolOptions(1));
  auto hang = MustTask(pool, faults::kHang);
  Future<int> f = pool.Submit(SubmitOptions{.timeout = absl::Milliseconds(200)}, hang, 0);
  EXPECT_EQ(StatusWithin(f).code(), absl::StatusCode::kResourceExhausted) << f.status();
  auto add = MustTask(pool, math::kAdd);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(pool.Submit(add, i, 1).Get(kWait), i + 1);
}

TEST_F(MpiPoolTest, TerminatingARunningRemoteTaskResolvesItAndFreesTheWorker) {
  PoolOptions opts = MpiPoolOptions(1);
  opts.plugins.push_back(ProbePlugin());
  ProcessPool pool = MustCreate(opts);
  auto hang = MustTask(pool, probe::kAnnounceAndHang);
  const std::string announce = TempPath("running");
  Future<int> f = pool.Submit(hang, announce);
  ASSERT_TRUE(WaitForAnnouncedPid(announce).has_value());
  EXPECT_TRUE(f.Terminate());
  EXPECT_EQ(StatusWithin(f).code(), absl::StatusCode::kCancelled);
  // Both agents' workers serve again (the one that ran `hang` was stopped).
  auto add = MustTask(pool, math::kAdd);
  std::vector<Future<int>> fs;
  for (int i = 0; i < 8; ++i) fs.push_back(pool.Submit(add, i, i));
  for (int i = 0; i < 8; ++i) EXPECT_EQ(fs[i].Get(kWait), 2 * i);
}

// A caller that queues while every agent's window is full does not wake
// the I/O thread (an answer comes first); tasks queued just after the last
// answer was taken must still go out at once, not at the next heartbeat.
TEST_F(MpiPoolTest, MapsOfTinyTasksNeverWaitForAHeartbeat) {
  PoolOptions opts = MpiPoolOptions(1);
  opts.mpi.heartbeat_interval = absl::Seconds(20);
  opts.mpi.agent_timeout = absl::Seconds(60);
  ProcessPool pool = MustCreate(opts);
  auto noop = MustTask(pool, math::kNoop);
  std::vector<int> xs(20000);
  std::iota(xs.begin(), xs.end(), 0);
  const absl::Time start = absl::Now();
  for (int round = 0; round < 30; ++round) {
    int64_t sum = 0;
    for (int r : pool.Map(noop, xs)) sum += r;
    ASSERT_EQ(sum, int64_t{19999} * 20000 / 2) << round;
    ASSERT_LT(absl::Now() - start, absl::Seconds(15))
        << "round " << round << ": a map waited for a heartbeat";
  }
}

TEST_F(MpiPoolTest, UnknownTasksAndWrongSignaturesAreRefused) {
  ProcessPool pool = MustCreate(MpiPoolOptions(1));
  EXPECT_EQ(pool.Task<int(int)>("no_such_task").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(pool.Task<double(int, int)>("add").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(MpiPoolTest, ShutdownLetsQueuedWorkFinishThenRefusesNewWork) {
  ProcessPool pool = MustCreate(MpiPoolOptions(1));
  auto sleep = MustTask(pool, faults::kSleepMs);
  std::vector<Future<int>> fs;
  for (int i = 0; i < 12; ++i) fs.push_back(pool.Submit(sleep, 5));
  pool.Shutdown();
  for (auto& f : fs) EXPECT_TRUE(f.Done() && f.status().ok()) << f.status();
  EXPECT_EQ(pool.Submit(sleep, 1).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(MpiPoolTest, DestroyingThePoolResolvesEveryFuture) {
  std::vector<Future<int>> fs;
  {
    ProcessPool pool = MustCreate(MpiPoolOptions(1));
    auto sleep = MustTask(pool, faults::kSleepMs);
    for (int i = 0; i < 50; ++i) fs.push_back(pool.Submit(sleep, 20));
    ASSERT_TRUE(WaitUntil([&] { return pool.Stats().in_flight > 0; }));
  }
  for (auto& f : fs) {
    ASSERT_TRUE(f.Done());
    EXPECT_TRUE(f.status().ok() || f.status().code() == absl::StatusCode::kCancelled)
        << f.status();
  }
}

TEST_F(MpiPoolTest, OnlyOneMpiPoolAtATime) {
  ProcessPool pool = MustCreate(MpiPoolOptions(1));
  absl::StatusOr<ProcessPool> second = ProcessPool::Create(MpiPoolOptions(1));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(MpiPoolTest, AMissingPluginIsAStartErrorNamingTheRank) {
  PoolOptions opts = MpiPoolOptions(1);
  opts.plugins = {TempPath("no_such_plugin.so")};
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(opts);
  ASSERT_FALSE(pool.ok());
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kNotFound) << pool.status();
  EXPECT_TRUE(absl::StrContains(pool.status().message(), "MPI agent MPI rank"))
      << pool.status();
  // The agents are free for the next pool.
  ProcessPool next = MustCreate(MpiPoolOptions(1));
  auto add = MustTask(next, math::kAdd);
  EXPECT_EQ(next.Submit(add, 2, 2).Get(kWait), 4);
}

// Run by tests/mpi/manifest_mismatch_test.sh: rank 1 starts in a directory
// where plugin.so is the math plugin, rank 2 in one where it is the faults
// plugin, and relative plugin paths are resolved by each agent.
TEST(ManifestMismatchTest, AgentsWhosePluginsDifferAreAStartError) {
  Watchdog watchdog(absl::Seconds(120));
  PoolOptions opts = MpiPoolOptions(1);
  opts.plugins = {"plugin.so"};
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(opts);
  ASSERT_FALSE(pool.ok());
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kFailedPrecondition)
      << pool.status();
  EXPECT_TRUE(absl::StrContains(pool.status().message(), "MPI rank 1")) << pool.status();
  EXPECT_TRUE(absl::StrContains(pool.status().message(), "MPI rank 2")) << pool.status();
  // The agents stopped their pools and serve the next one.
  absl::StatusOr<ProcessPool> next = ProcessPool::Create(MpiPoolOptions(1));
  ASSERT_TRUE(next.ok()) << next.status();
  auto add = MustTask(*next, math::kAdd);
  EXPECT_EQ(next->Submit(add, 2, 3).Get(kWait), 5);
}

// The AgentLoss tests run in one job of 4 ranks (3 agents), in order, with
// mpirun --enable-recovery --mca orte_abort_on_non_zero_status 0: otherwise
// Open MPI ends the whole job when an agent dies. The ranks are on this
// host in the test, so the test kills them itself; on a cluster an agent
// dies with its node, or is killed there.

PoolOptions LossOptions() {
  PoolOptions opts = MpiPoolOptions(1);
  opts.mpi.heartbeat_interval = absl::Milliseconds(100);
  opts.mpi.agent_timeout = absl::Seconds(4);
  return opts;
}

const mpi::AgentInfo* FindAgent(const std::vector<mpi::AgentInfo>& agents, int rank) {
  for (const mpi::AgentInfo& a : agents) {
    if (a.rank == rank) return &a;
  }
  return nullptr;
}

TEST(AgentLossTest, AnAgentKilledMidMapHasItsTasksRerunElsewhere) {
  Watchdog watchdog(absl::Seconds(150));
  ProcessPool pool = MustCreate(LossOptions());
  std::vector<mpi::AgentInfo> agents = mpi::Agents(pool);
  ASSERT_EQ(agents.size(), 3u);
  const mpi::AgentInfo* victim = FindAgent(agents, 3);
  ASSERT_NE(victim, nullptr);
  const int victim_pid = victim->pid;

  auto sleep = MustTask(pool, faults::kSleepMs);
  std::vector<int> ms(60, 20);
  size_t index = 0, failures = 0;
  for (const absl::StatusOr<int>& r : pool.TryMap(sleep, ms)) {
    if (index == 5) {
      ASSERT_EQ(::kill(victim_pid, SIGKILL), 0);
    }
    if (r.ok()) {
      EXPECT_EQ(*r, 20);
    } else {
      ADD_FAILURE() << index << ": " << r.status();
      ++failures;
    }
    ++index;
  }
  EXPECT_EQ(index, ms.size()) << "the map finished";
  EXPECT_EQ(failures, 0u) << "the lost agent's tasks were re-run on the others";
  agents = mpi::Agents(pool);
  EXPECT_TRUE(FindAgent(agents, 3)->lost);
  EXPECT_TRUE(absl::StrContains(FindAgent(agents, 3)->lost_reason,
                                "remote worker rank 3 lost"))
      << FindAgent(agents, 3)->lost_reason;
  EXPECT_FALSE(FindAgent(agents, 1)->lost);
  EXPECT_FALSE(FindAgent(agents, 2)->lost);
  EXPECT_EQ(pool.num_workers(), 2);
  auto add = MustTask(pool, math::kAdd);
  EXPECT_EQ(pool.Submit(add, 20, 22).Get(kWait), 42);
}

TEST(AgentLossTest, WithoutRequeueTheLostAgentsTasksFailNamingTheRank) {
  Watchdog watchdog(absl::Seconds(150));
  PoolOptions opts = LossOptions();
  opts.mpi.requeue_on_agent_loss = false;
  ProcessPool pool = MustCreate(opts);
  std::vector<mpi::AgentInfo> agents = mpi::Agents(pool);
  ASSERT_EQ(agents.size(), 3u);
  EXPECT_TRUE(FindAgent(agents, 3)->lost) << "rank 3 stays lost for the job";
  const int victim_pid = FindAgent(agents, 2)->pid;

  auto sleep = MustTask(pool, faults::kSleepMs);
  std::vector<int> ms(40, 50);
  size_t index = 0, failures = 0;
  for (const absl::StatusOr<int>& r : pool.TryMap(sleep, ms)) {
    if (index == 3) {
      ASSERT_EQ(::kill(victim_pid, SIGKILL), 0);
    }
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
      EXPECT_TRUE(absl::StrContains(r.status().message(), "remote worker rank 2 lost"))
          << r.status();
      ++failures;
    }
    ++index;
  }
  EXPECT_EQ(index, ms.size()) << "the map finished";
  // Rank 2 held at most its window of tasks when it died.
  EXPECT_GE(failures, 1u);
  EXPECT_LE(failures, 4u);
  EXPECT_TRUE(FindAgent(mpi::Agents(pool), 2)->lost);
  EXPECT_EQ(pool.num_workers(), 1);
}

TEST(AgentLossTest, ALaterPoolUsesTheAgentsThatAreLeft) {
  Watchdog watchdog(absl::Seconds(120));
  ProcessPool pool = MustCreate(LossOptions());
  std::vector<mpi::AgentInfo> agents = mpi::Agents(pool);
  ASSERT_EQ(agents.size(), 3u);
  EXPECT_TRUE(FindAgent(agents, 1)->ready);
  EXPECT_TRUE(FindAgent(agents, 2)->lost);
  EXPECT_TRUE(FindAgent(agents, 3)->lost);
  auto add = MustTask(pool, math::kAdd);
  EXPECT_EQ(pool.Submit(add, 1, 1).Get(kWait), 2);
}

}  // namespace
}  // namespace procpool::testing

int main(int argc, char** argv) {
  absl::StatusOr<std::unique_ptr<procpool::mpi::Session>> mpi =
      procpool::mpi::Session::Init(&argc, &argv);
  if (!mpi.ok()) {
    std::fprintf(stderr, "%s\n", mpi.status().ToString().c_str());
    return 1;
  }
  if (!(*mpi)->is_front_end()) return (*mpi)->ServeAsAgent();
  ::testing::InitGoogleTest(&argc, argv);
  int rc = RUN_ALL_TESTS();
  mpi->reset();
  // With --enable-recovery, mpirun's own exit status does not reflect rank
  // 0's: tests/mpi/mpirun_test.sh reads this file instead.
  if (const char* path = std::getenv("PROCPOOL_MPI_RESULT_FILE")) {
    if (FILE* f = std::fopen(path, "w")) {
      std::fprintf(f, "%d\n", rc);
      std::fclose(f);
    }
  }
  return rc;
}
