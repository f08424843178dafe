// Creating a pool: loading plugins in the workers, the manifest the pool
// builds from them, task lookup, and every way Create() can fail.

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "pool/pool.h"
#include "tests/testing/pool_fixture.h"

namespace procpool {
namespace {

using ::procpool::testing::ChildProcesses;
using ::procpool::testing::MathPlugin;
using ::procpool::testing::PoolTest;
using ::procpool::testing::Runfile;
using ::procpool::testing::StatusWithin;
using ::procpool::testing::TempPath;
using ::procpool::testing::Watchdog;

// Tests of Create() errors: no pool of their own, only a time bound.
class CreateTest : public ::testing::Test {
 protected:
  static PoolOptions MathOnly() {
    PoolOptions o;
    o.max_workers = 1;
    o.plugins = {MathPlugin()};
    o.start_timeout = absl::Seconds(20);
    return o;
  }
  static std::string WriteTextFile(const std::string& name, mode_t mode) {
    std::string path = TempPath(name);
    std::ofstream(path) << "this is not a shared object\n";
    ::chmod(path.c_str(), mode);
    return path;
  }
  Watchdog watchdog_{absl::Seconds(60)};
};

const TaskDescription* FindDescription(const std::vector<TaskDescription>& ts,
                                       const std::string& name) {
  for (const TaskDescription& t : ts) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

// ---- The manifest ----

TEST_F(PoolTest, TasksListsTheMathTasksInRegistrationOrder) {
  std::vector<std::string> names;
  for (const TaskDescription& t : pool().Tasks()) names.push_back(t.name);
  std::vector<std::string> want = {
      "slow_add", "add", "noop", "identity", "spin", "sum_primes_below", "sum"};
  ASSERT_GE(names.size(), want.size());
  EXPECT_EQ(
      std::vector<std::string>(names.begin(), names.begin() + want.size()),
      want);
}

TEST_F(PoolTest, TasksShowReadableSignatures) {
  std::vector<TaskDescription> tasks = pool().Tasks();
  const TaskDescription* add = FindDescription(tasks, "add");
  const TaskDescription* identity = FindDescription(tasks, "identity");
  const TaskDescription* sum = FindDescription(tasks, "sum");
  ASSERT_NE(add, nullptr);
  ASSERT_NE(identity, nullptr);
  ASSERT_NE(sum, nullptr);
  EXPECT_EQ(add->signature, "int(int, int)");
  EXPECT_EQ(identity->signature, "std::string(std::string)");
  EXPECT_EQ(sum->signature, "double(std::vector<double>)");
}

TEST_F(PoolTest, TasksNameThePluginThatRegistersThem) {
  std::vector<TaskDescription> tasks = pool().Tasks();
  const TaskDescription* add = FindDescription(tasks, "add");
  const TaskDescription* segfault = FindDescription(tasks, "segfault");
  ASSERT_NE(add, nullptr);
  ASSERT_NE(segfault, nullptr);
  EXPECT_EQ(add->plugin, MathPlugin());
  EXPECT_EQ(segfault->plugin, testing::FaultsPlugin());
}

TEST_F(PoolTest, TasksOfLaterPluginsFollowThoseOfEarlierOnes) {
  std::vector<TaskDescription> tasks = pool().Tasks();
  auto pos = [&](const std::string& name) {
    return std::find_if(
               tasks.begin(), tasks.end(),
               [&](const TaskDescription& t) { return t.name == name; }) -
           tasks.begin();
  };
  EXPECT_LT(pos("sum"), pos("throw"));  // math before faults
  EXPECT_LT(pos("pid"), pos("add3"));   // faults before probe
  EXPECT_LT(pos("add3"), static_cast<long>(tasks.size()));
}

TEST_F(PoolTest, StartsTheRequestedNumberOfWorkerProcesses) {
  EXPECT_EQ(pool().num_workers(), 2);
  std::vector<int> pids = pool().WorkerPids();
  ASSERT_EQ(pids.size(), 2u);
  EXPECT_NE(pids[0], pids[1]);
  std::vector<int> children;
  for (const auto& c : ChildProcesses()) children.push_back(c.pid);
  for (int pid : pids) {
    EXPECT_NE(std::find(children.begin(), children.end(), pid), children.end())
        << "worker " << pid << " is not a child of the test process";
  }
}

// ---- Task lookup ----

TEST_F(PoolTest, TaskWithTheRegisteredSignatureIsFound) {
  auto add = pool().Task<int(int, int)>("add");
  ASSERT_TRUE(add.ok()) << add.status();
  EXPECT_EQ(add->name(), "add");
}

TEST_F(PoolTest, TaskAcceptsConstReferenceArgumentsForValueParameters) {
  EXPECT_TRUE((pool().Task<std::string(const std::string&)>("identity").ok()));
  EXPECT_TRUE((pool().Task<double(const std::vector<double>&)>("sum").ok()));
}

TEST_F(PoolTest, TaskRefFromThePluginHeaderIsFound) {
  EXPECT_TRUE(pool().Task(math::kSum).ok());
  EXPECT_TRUE(pool().Task(faults::kSleepMs).ok());
}

TEST_F(PoolTest, UnknownTaskReturnsNotFound) {
  EXPECT_EQ(pool().Task<int(int, int)>("no_such_task").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(PoolTest, SignatureMismatchReturnsInvalidArgument) {
  EXPECT_EQ(pool().Task<double(int, int)>("add").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(PoolTest, SignatureMismatchMessageShowsBothSignatures) {
  // The two readable signatures are the point of this error.
  absl::Status s = pool().Task<double(int, int)>("add").status();
  EXPECT_NE(s.message().find("int(int, int)"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("double(int, int)"), absl::string_view::npos) << s;
}

TEST_F(PoolTest, ArityMismatchReturnsInvalidArgument) {
  EXPECT_EQ(pool().Task<int(int)>("add").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(PoolTest, ArgumentTypeMismatchReturnsInvalidArgument) {
  EXPECT_EQ(pool().Task<int(long, int)>("add").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(PoolTest, SubmitThroughAnUnknownTaskRefResolvesNotFound) {
  constexpr TaskRef<int(int)> kMissing{"missing"};
  EXPECT_EQ(StatusWithin(pool().Submit(kMissing, 1)).code(),
            absl::StatusCode::kNotFound);
}

TEST_F(PoolTest, SubmitThroughAMismatchedTaskRefResolvesInvalidArgument) {
  constexpr TaskRef<std::string(int, int)> kWrongAdd{"add"};
  EXPECT_EQ(StatusWithin(pool().Submit(kWrongAdd, 1, 2)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(PoolTest, SubmitThroughATaskRefRuns) {
  EXPECT_EQ(pool().Submit(math::kAdd, 20, 22).Get(testing::kWait), 42);
}

// ---- Create() ----

TEST_F(CreateTest, ZeroMaxWorkersMeansOnePerHardwareThread) {
  if (std::thread::hardware_concurrency() > 4) {
    GTEST_SKIP() << "tests start at most 4 workers";
  }
  PoolOptions o = MathOnly();
  o.max_workers = 0;
  auto pool = ProcessPool::Create(o);
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ(pool->num_workers(),
            std::max(1, static_cast<int>(std::thread::hardware_concurrency())));
}

TEST_F(CreateTest, RelativePluginPathIsResolvedAgainstTheCurrentDirectory) {
  // Tests run in the runfiles tree of the workspace.
  PoolOptions o = MathOnly();
  o.plugins = {"plugins/math/libmath.so"};
  auto pool = ProcessPool::Create(o);
  ASSERT_TRUE(pool.ok()) << pool.status();
  std::vector<TaskDescription> tasks = pool->Tasks();
  ASSERT_FALSE(tasks.empty());
  EXPECT_EQ(tasks[0].plugin.front(), '/') << tasks[0].plugin;
}

TEST_F(CreateTest, PoolWithoutPluginsHasNoTasks) {
  PoolOptions o = MathOnly();
  o.plugins.clear();
  auto pool = ProcessPool::Create(o);
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_TRUE(pool->Tasks().empty());
  EXPECT_EQ(pool->Task<int(int, int)>("add").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(CreateTest, MissingPluginReturnsNotFound) {
  PoolOptions o = MathOnly();
  o.plugins.push_back(TempPath("no_such_plugin.so"));
  EXPECT_EQ(ProcessPool::Create(o).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(CreateTest, MissingWorkerExecutableReturnsNotFound) {
  PoolOptions o = MathOnly();
  o.worker_path = "/nonexistent";
  EXPECT_EQ(ProcessPool::Create(o).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(CreateTest,
       WorkerExecutableWithoutExecutePermissionReturnsPermissionDenied) {
  PoolOptions o = MathOnly();
  o.worker_path = WriteTextFile("worker_not_executable", 0644);
  EXPECT_EQ(ProcessPool::Create(o).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(CreateTest, TextFileAsPluginReturnsInvalidArgument) {
  PoolOptions o = MathOnly();
  o.plugins.push_back(WriteTextFile("plugin.txt", 0644));
  EXPECT_EQ(ProcessPool::Create(o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(CreateTest, SharedObjectWithoutEntryPointReturnsInvalidArgument) {
  PoolOptions o = MathOnly();
  o.plugins.push_back(Runfile("tests/testdata/libnot_a_plugin.so"));
  EXPECT_EQ(ProcessPool::Create(o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(CreateTest, PluginBuiltForAnotherAbiVersionReturnsFailedPrecondition) {
  PoolOptions o = MathOnly();
  o.plugins.push_back(Runfile("tests/testdata/libwrong_abi.so"));
  EXPECT_EQ(ProcessPool::Create(o).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(CreateTest, TwoTasksOfOneNameReturnAlreadyExists) {
  PoolOptions o = MathOnly();
  o.plugins = {MathPlugin(), MathPlugin()};
  EXPECT_EQ(ProcessPool::Create(o).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_F(CreateTest, PluginThatCrashesWhileLoadingFailsCreateWithInternal) {
  PoolOptions o = MathOnly();
  o.plugins.push_back(Runfile("tests/testdata/libcrash_on_load.so"));
  EXPECT_EQ(ProcessPool::Create(o).status().code(),
            absl::StatusCode::kInternal);
}

TEST_F(CreateTest, FailedCreateLeavesNoChildProcess) {
  PoolOptions o = MathOnly();
  o.max_workers = 2;
  o.plugins.push_back(Runfile("tests/testdata/libcrash_on_load.so"));
  ASSERT_FALSE(ProcessPool::Create(o).ok());
  EXPECT_TRUE(ChildProcesses().empty());
}

TEST_F(CreateTest, WorkerThatFailsToStartInTimeReturnsDeadlineExceeded) {
  PoolOptions o = MathOnly();
  // A "worker" that never says hello.
  std::string script = TempPath("silent_worker.sh");
  std::ofstream(script) << "#!/bin/sh\nexec sleep 30\n";
  ::chmod(script.c_str(), 0755);
  o.worker_path = script;
  o.start_timeout = absl::Milliseconds(300);
  EXPECT_EQ(ProcessPool::Create(o).status().code(),
            absl::StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace procpool
