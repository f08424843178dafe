// StartMethod::kZygote: workers forked from a template process, which
// loads the plugins and runs the preload once; the fallbacks to spawning.

#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pool/pool.h"
#include "tests/testing/pool_fixture.h"

namespace procpool {
namespace {

using ::procpool::testing::kWait;
using ::procpool::testing::PoolTest;
using ::procpool::testing::StatusWithin;
using ::procpool::testing::TempPath;
using ::procpool::testing::TestPoolOptions;
using ::procpool::testing::WaitUntil;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// The parent pid and process group of `pid`, from /proc/<pid>/stat.
std::pair<int, int> ParentAndGroup(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  // "pid (comm) state ppid pgrp ...": comm may hold spaces; read after ')'.
  std::istringstream rest(stat.substr(stat.rfind(')') + 2));
  char state;
  int ppid = 0, pgrp = 0;
  rest >> state >> ppid >> pgrp;
  return {ppid, pgrp};
}

std::vector<std::string> Lines(const std::string& path) {
  std::ifstream f(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(f, line);) out.push_back(line);
  return out;
}

int TemplatePid(const PoolStats& stats) {
  const std::string prefix = "zygote (template pid ";
  if (stats.start_method.rfind(prefix, 0) != 0) return 0;
  return std::stoi(stats.start_method.substr(prefix.size()));
}

class ZygoteTest : public PoolTest {
 protected:
  void SetUp() override {}
  PoolOptions ZygoteOptions(int workers = 2) {
    PoolOptions o = TestPoolOptions(workers);
    o.start_method = StartMethod::kZygote;
    return o;
  }
};

TEST_F(ZygoteTest, WorkersAreForkedChildrenOfThePoolInTheirOwnGroups) {
  StartPool(ZygoteOptions(2));
  const PoolStats stats = pool().Stats();
  EXPECT_THAT(stats.start_method, StartsWith("zygote (template pid "));
  EXPECT_EQ(stats.template_starts, 1u);
  const int template_pid = TemplatePid(stats);
  ASSERT_GT(template_pid, 0);
  EXPECT_EQ(ParentAndGroup(template_pid).first, ::getpid());
  for (int pid : pool().WorkerPids()) {
    EXPECT_NE(pid, template_pid);
    // A child of this process (CLONE_PARENT), not of the template, leading
    // its own process group.
    EXPECT_EQ(ParentAndGroup(pid), std::make_pair(static_cast<int>(::getpid()), pid));
  }
  std::vector<Future<int>> futures;
  for (int i = 0; i < 100; ++i) futures.push_back(pool().Submit(Task(math::kAdd), i, i));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(futures[i].Result(kWait).value_or(-1), 2 * i);
}

TEST_F(ZygoteTest, ThePreloadRunsOnceInTheTemplateAndWorkersInheritWhatItBuilt) {
  const std::string ran = TempPath("preload_ran");
  PoolOptions o = ZygoteOptions(2);
  o.preload = Initializer::Of(probe::kRemember, ran, 41);
  StartPool(o);
  const int template_pid = TemplatePid(pool().Stats());
  EXPECT_EQ(Lines(ran), std::vector<std::string>{std::to_string(template_pid)});
  EXPECT_EQ(pool().Submit(Task(probe::kRemembered), 1).Result(kWait).value_or(-1), 42);
  // A replacement comes from the same template: no second preload.
  const std::vector<int> before = pool().WorkerPids();
  EXPECT_FALSE(StatusWithin(pool().Submit(Task(faults::kSegfault), 0)).ok());
  ASSERT_TRUE(WaitUntil([&] {
    std::vector<int> now = pool().WorkerPids();
    return now.size() == 2 && now != before && now[0] != 0 && now[1] != 0;
  }));
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(pool().Submit(Task(probe::kRemembered), 0).Result(kWait).value_or(-1), 41);
  }
  EXPECT_EQ(Lines(ran).size(), 1u);
  EXPECT_EQ(pool().Stats().template_starts, 1u);
}

TEST_F(ZygoteTest, WithSpawnThePreloadRunsInEachWorker) {
  const std::string ran = TempPath("preload_ran_spawn");
  PoolOptions o = TestPoolOptions(2);
  o.preload = Initializer::Of(probe::kRemember, ran, 5);
  StartPool(o);
  EXPECT_EQ(Lines(ran).size(), 2u);
  EXPECT_EQ(pool().Submit(Task(probe::kRemembered), 0).Result(kWait).value_or(-1), 5);
  EXPECT_EQ(pool().Stats().start_method, "spawn");
  EXPECT_EQ(pool().Stats().template_starts, 0u);
}

TEST_F(ZygoteTest, ATemplateThatDiesIsRestartedAndNothingIsLost) {
  StartPool(ZygoteOptions(2));
  const int first = TemplatePid(pool().Stats());
  ASSERT_GT(first, 0);
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  std::vector<Future<int>> futures;
  for (int round = 0; round < 3; ++round) {
    // Each crash asks for a replacement: the first finds the template dead
    // (spawns, restarts it), later ones fork from the new template.
    EXPECT_FALSE(StatusWithin(pool().Submit(Task(faults::kSegfault), 0)).ok());
    for (int i = 0; i < 20; ++i) futures.push_back(pool().Submit(Task(math::kAdd), i, 1));
    ASSERT_TRUE(WaitUntil([&] { return pool().Stats().template_starts >= 2; }));
  }
  for (int i = 0; i < 60; ++i) EXPECT_EQ(futures[i].Result(kWait).value_or(-1), i % 20 + 1);
  ASSERT_TRUE(WaitUntil([&] {
    // Once the new template is ready, the next replacement is forked.
    if (TemplatePid(pool().Stats()) > 0) return true;
    (void)StatusWithin(pool().Submit(Task(faults::kSegfault), 0));
    return false;
  }));
  const int second = TemplatePid(pool().Stats());
  EXPECT_NE(second, first);
  EXPECT_EQ(pool().Stats().template_starts, 2u);
}

TEST_F(ZygoteTest, AStoppedTemplateIsReplacedAndTheReplacementStillComes) {
  StartPool(ZygoteOptions(1));
  const int first = TemplatePid(pool().Stats());
  ASSERT_GT(first, 0);
  ASSERT_EQ(::kill(first, SIGSTOP), 0);
  // The crash asks for a replacement; the stopped template does not answer
  // within WorkerLauncher::kForkTimeout, so it is killed and the worker is
  // spawned.
  EXPECT_FALSE(StatusWithin(pool().Submit(Task(faults::kSegfault), 0)).ok());
  EXPECT_EQ(pool().Submit(Task(math::kAdd), 20, 22).Result(kWait).value_or(-1), 42);
  EXPECT_EQ(pool().Stats().template_starts, 2u);
  EXPECT_TRUE(WaitUntil([&] { return ::kill(first, 0) != 0; }));  // reaped
}

TEST_F(ZygoteTest, AReplacementIsTheSpareForkedAheadAndANewSpareFollows) {
  StartPool(ZygoteOptions(1));
  int spare = 0;
  ASSERT_TRUE(WaitUntil([&] { return (spare = pool().Stats().spare_worker_pid) != 0; }));
  EXPECT_EQ(ParentAndGroup(spare), std::make_pair(static_cast<int>(::getpid()), spare));
  const std::vector<int> before = pool().WorkerPids();
  ASSERT_EQ(before.size(), 1u);
  EXPECT_NE(before[0], spare);  // not listed as a worker while it waits
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(StatusWithin(pool().Submit(Task(faults::kSegfault), 0)).code(),
              absl::StatusCode::kAborted);
    ASSERT_TRUE(WaitUntil([&] { return pool().WorkerPids() == std::vector<int>{spare}; }))
        << "round " << round << ": the spare " << spare << " did not take the slot";
    EXPECT_EQ(pool().Submit(Task(math::kAdd), round, 1).Result(kWait).value_or(-1), round + 1);
    int next = 0;
    ASSERT_TRUE(WaitUntil([&] {
      next = pool().Stats().spare_worker_pid;
      return next != 0 && next != spare;
    }));
    spare = next;
  }
  EXPECT_EQ(pool().Stats().template_starts, 1u);
}

TEST_F(ZygoteTest, ASpareThatDiesIsReplacedAndNothingIsLost) {
  StartPool(ZygoteOptions(2));
  int spare = 0;
  ASSERT_TRUE(WaitUntil([&] { return (spare = pool().Stats().spare_worker_pid) != 0; }));
  ASSERT_EQ(::kill(spare, SIGKILL), 0);
  std::vector<Future<int>> futures;
  for (int i = 0; i < 50; ++i) futures.push_back(pool().Submit(Task(math::kAdd), i, i));
  for (int i = 0; i < 50; ++i) EXPECT_EQ(futures[i].Result(kWait).value_or(-1), 2 * i);
  int next = 0;
  // A new spare is forked at the end of a turn of the I/O thread: a task
  // makes one.
  ASSERT_TRUE(WaitUntil([&] {
    (void)pool().Submit(Task(math::kAdd), 1, 1).Result(kWait);
    next = pool().Stats().spare_worker_pid;
    return next != 0 && next != spare;
  }));
  EXPECT_TRUE(WaitUntil([&] { return ::kill(spare, 0) != 0; }));  // reaped
}

TEST_F(ZygoteTest, NoWorkerSpareOrTemplateOutlivesThePool) {
  StartPool(ZygoteOptions(2));
  int spare = 0;
  ASSERT_TRUE(WaitUntil([&] { return (spare = pool().Stats().spare_worker_pid) != 0; }));
  std::vector<int> pids = pool().WorkerPids();
  pids.push_back(spare);
  pids.push_back(TemplatePid(pool().Stats()));
  EXPECT_EQ(pool().Submit(Task(math::kAdd), 2, 2).Result(kWait).value_or(-1), 4);
  DestroyPool();
  for (int pid : pids) EXPECT_NE(::kill(pid, 0), 0) << "pid " << pid << " outlived the pool";
  EXPECT_TRUE(procpool::testing::ChildProcesses().empty());
}

// A pool destroyed at once drops the spare it has just forked, perhaps
// before the spare has made its own process group: it is still killed
// and reaped (the pool makes the group itself when it learns the pid).
TEST_F(ZygoteTest, APoolDestroyedAtOnceLeavesNoProcessAndDoesNotHang) {
  for (int round = 0; round < 30; ++round) {
    StartPool(ZygoteOptions(1));
    DestroyPool();
    ASSERT_TRUE(procpool::testing::ChildProcesses().empty()) << "round " << round;
  }
}

TEST_F(ZygoteTest, ATemplateWithAThreadIsNotUsedAndThePoolSpawns) {
  PoolOptions o = ZygoteOptions(2);
  o.preload = Initializer::Of(probe::kStartThread, 0);
  StartPool(o);
  const PoolStats stats = pool().Stats();
  EXPECT_THAT(stats.start_method, StartsWith("spawn (template unavailable: "));
  EXPECT_THAT(stats.start_method, HasSubstr("threads"));
  EXPECT_EQ(stats.spare_worker_pid, 0);
  EXPECT_EQ(pool().Submit(Task(math::kAdd), 2, 3).Result(kWait).value_or(-1), 5);
}

TEST_F(ZygoteTest, APreloadThatFailsFailsCreateNamingIt) {
  PoolOptions o = ZygoteOptions(1);
  o.preload = Initializer::Of(faults::kThrow, std::string("no tables"));
  absl::StatusOr<ProcessPool> p = ProcessPool::Create(o);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("preload 'throw'"));
  EXPECT_THAT(p.status().message(), HasSubstr("no tables"));
}

TEST_F(ZygoteTest, ForkedWorkersCaptureStdoutAndRunSandboxed) {
  PoolOptions o = ZygoteOptions(1);
  o.sandbox = true;
  o.forward_worker_stderr = false;
  StartPool(o);
  EXPECT_THAT(pool().Stats().start_method, StartsWith("zygote"));
  EXPECT_NE(pool().Stats().sandbox, "off");
  EXPECT_EQ(pool().Submit(Task(probe::kPrintToStdout), std::string("hello")).Result(kWait)
                .value_or(-1),
            5);
  // What a task printed is in the crash message of the next task's worker.
  absl::Status crash = StatusWithin(pool().Submit(Task(faults::kSegfault), 0));
  EXPECT_THAT(crash.message(), HasSubstr("hello"));
}

TEST_F(ZygoteTest, StartMethodIsChecked) {
  PoolOptions o = TestPoolOptions(1);
  o.start_method = static_cast<StartMethod>(7);
  absl::StatusOr<ProcessPool> p = ProcessPool::Create(o);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status().message(), HasSubstr("PoolOptions::start_method"));
}

}  // namespace
}  // namespace procpool
