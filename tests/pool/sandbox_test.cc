// PoolOptions::sandbox against the hostile plugin (tests/testdata/hostile.h),
// whose tasks each try one escape. Under the sandbox every attempt fails,
// the other tasks are unaffected and the pool goes on; without it the same
// attempts succeed (so the tests prove the sandbox, not the machine). Also
// runs the math, faults and probe plugins sandboxed, so that the allowlist
// is what real tasks need.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pool/pool.h"
#include "tests/testdata/hostile.h"
#include "tests/testing/pool_fixture.h"

namespace procpool {
namespace {

using ::procpool::testing::kWait;
using ::procpool::testing::MustTask;
using ::procpool::testing::Runfile;
using ::procpool::testing::TempPath;
using ::procpool::testing::Watchdog;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

PoolOptions HostileOptions(bool sandbox) {
  PoolOptions o = testing::TestPoolOptions(2);
  o.plugins.push_back(Runfile("tests/testdata/libhostile.so"));
  o.sandbox = sandbox;
  return o;
}

ProcessPool MustCreate(PoolOptions o) {
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(std::move(o));
  if (!pool.ok()) throw std::runtime_error(pool.status().ToString());
  return *std::move(pool);
}

template <class Sig, class... A>
std::string RunTask(ProcessPool& pool, TaskRef<Sig> ref, A&&... args) {
  absl::StatusOr<std::string> r =
      pool.Submit(MustTask(pool, ref), std::forward<A>(args)...).Result(kWait);
  return r.ok() ? *r : absl::StrCat("task error: ", r.status().ToString());
}

// A key file in a fresh home directory: the secret a task must not read.
std::string MakeKey(std::string* home) {
  *home = TempPath("home");
  ::mkdir(home->c_str(), 0700);
  ::mkdir((*home + "/.ssh").c_str(), 0700);
  const std::string key = *home + "/.ssh/id_ed25519";
  std::ofstream(key) << "PRIVATE KEY 1234\n";
  return key;
}

// A TCP listener on 127.0.0.1 (an ephemeral port), closed on destruction.
class Listener {
 public:
  Listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(fd_, 8) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("cannot listen on 127.0.0.1");
    }
    port_ = ntohs(addr.sin_port);
  }
  ~Listener() { ::close(fd_); }
  int port() const { return port_; }
  // Whether a connection is waiting to be accepted.
  bool Connected() {
    const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return false;
    ::close(c);
    return true;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

std::string SystemTempPath() {
  static int n = 0;
  return absl::StrCat("/tmp/procpool_sandbox_test_", ::getpid(), "_", n++);
}

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// ---------------------------------------------------------------------------
// Under the sandbox

class SandboxTest : public ::testing::Test {
 protected:
  Watchdog watchdog_{absl::Seconds(90)};
};

TEST_F(SandboxTest, EveryEscapeFailsAndThePoolGoesOn) {
  ProcessPool pool = MustCreate(HostileOptions(true));
  std::string home;
  const std::string key = MakeKey(&home);
  Listener listener;
  const std::string tmp = SystemTempPath();
  const std::string marker = TempPath("exec_marker");

  const std::string read = RunTask(pool, hostile::kReadFile, key);
  EXPECT_THAT(read, StartsWith("failed: "));
  EXPECT_THAT(read, ::testing::Not(HasSubstr("PRIVATE")));
  EXPECT_THAT(RunTask(pool, hostile::kWriteFile, tmp), StartsWith("failed: "));
  EXPECT_FALSE(Exists(tmp));
  EXPECT_THAT(RunTask(pool, hostile::kConnectTcp, listener.port()),
              StartsWith("failed: Operation not permitted"));
  EXPECT_FALSE(listener.Connected());
  EXPECT_THAT(RunTask(pool, hostile::kExecShell, marker),
              StartsWith("failed: Operation not permitted"));
  EXPECT_FALSE(Exists(marker));
  EXPECT_THAT(RunTask(pool, hostile::kPtraceParent, 0),
              StartsWith("failed: Operation not permitted"));
  EXPECT_THAT(RunTask(pool, hostile::kSignalParent, 0),
              StartsWith("failed: Operation not permitted"));
  EXPECT_THAT(RunTask(pool, hostile::kForkSurvivor, 30),
              StartsWith("failed: Operation not permitted"));

  // No worker died, the others' tasks run, and the pool says what is on.
  std::vector<std::string> words = {"a", "b", "c", "d", "e", "f"};
  absl::StatusOr<std::vector<std::string>> echoed =
      pool.MapAll(MustTask(pool, hostile::kEcho), words);
  ASSERT_TRUE(echoed.ok()) << echoed.status();
  EXPECT_EQ(*echoed, words);
  const PoolStats stats = pool.Stats();
  for (const WorkerStats& w : stats.workers) EXPECT_EQ(w.restarts, 0) << w.slot;
  EXPECT_THAT(stats.sandbox, HasSubstr("seccomp allowlist (denied calls fail EPERM)"));
  EXPECT_THAT(stats.sandbox, HasSubstr("no_new_privs"));
  EXPECT_THAT(stats.sandbox, HasSubstr("Landlock ABI"));
  EXPECT_THAT(stats.sandbox, Not(HasSubstr("network namespace")));
  if (::geteuid() == 0) {
    EXPECT_THAT(stats.sandbox, HasSubstr("capabilities dropped"));
  }
  RecordProperty("sandbox", stats.sandbox);
  pool.Terminate();
}

TEST_F(SandboxTest, SandboxPathsOpenWhatTheyName) {
  std::string home;
  const std::string key = MakeKey(&home);
  const std::string out_dir = TempPath("out");
  ASSERT_EQ(::mkdir(out_dir.c_str(), 0700), 0);
  PoolOptions o = HostileOptions(true);
  o.sandbox_paths = {{home + "/.ssh", false}, {out_dir, true}};
  ProcessPool pool = MustCreate(o);
  EXPECT_EQ(RunTask(pool, hostile::kReadFile, key), "succeeded: PRIVATE KEY 1234\n");
  EXPECT_EQ(RunTask(pool, hostile::kWriteFile, out_dir + "/result"), "succeeded");
  EXPECT_TRUE(Exists(out_dir + "/result"));
  // Read-only stays read-only.
  EXPECT_THAT(RunTask(pool, hostile::kWriteFile, home + "/.ssh/new"), StartsWith("failed: "));
  EXPECT_FALSE(Exists(home + "/.ssh/new"));
  pool.Terminate();
}

TEST_F(SandboxTest, StopWorkerNamesTheDeniedCallAndReplacesTheWorker) {
  PoolOptions o = HostileOptions(true);
  o.max_workers = 1;
  o.sandbox_on_denied = SandboxDenial::kStopWorker;
  o.forward_worker_stderr = false;
  ProcessPool pool = MustCreate(o);
  const std::string marker = TempPath("exec_marker");
  absl::StatusOr<std::string> r =
      pool.Submit(MustTask(pool, hostile::kExecShell), marker).Result(kWait);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("SIGSYS"));
  EXPECT_THAT(r.status().message(), HasSubstr("the sandbox denied system call execve"));
  EXPECT_FALSE(Exists(marker));
  absl::StatusOr<std::string> fork =
      pool.Submit(MustTask(pool, hostile::kForkSurvivor), 30).Result(kWait);
  ASSERT_FALSE(fork.ok());
  EXPECT_THAT(fork.status().message(), HasSubstr("the sandbox denied system call"));
  // A replacement serves the next task.
  EXPECT_EQ(RunTask(pool, hostile::kEcho, std::string("still here")), "still here");
  EXPECT_THAT(pool.Stats().sandbox, HasSubstr("denied calls stop the worker"));
  pool.Terminate();
}

TEST_F(SandboxTest, FileSizeLimitBoundsWrites) {
  const std::string out_dir = TempPath("out_limited");
  ASSERT_EQ(::mkdir(out_dir.c_str(), 0700), 0);
  PoolOptions o = HostileOptions(true);
  o.sandbox_paths = {{out_dir, true}};
  o.sandbox_max_file_bytes = 4;  // smaller than the line WriteFile writes
  ProcessPool pool = MustCreate(o);
  EXPECT_THAT(RunTask(pool, hostile::kWriteFile, out_dir + "/big"), StartsWith("failed: File too large"));
  EXPECT_THAT(pool.Stats().sandbox, HasSubstr("RLIMIT_FSIZE"));
  pool.Terminate();
}

// The network namespace is opt-in (the seccomp filter and Landlock refuse
// the network already): as root, asked for, it is in force, and a TCP
// connect still fails.
TEST_F(SandboxTest, ANetworkNamespaceWhenAskedFor) {
  if (::geteuid() != 0) GTEST_SKIP() << "a network namespace needs CAP_SYS_ADMIN";
  PoolOptions o = HostileOptions(true);
  o.sandbox_network_namespace = true;
  ProcessPool pool = MustCreate(o);
  EXPECT_THAT(pool.Stats().sandbox, HasSubstr(", network namespace"));
  Listener listener;
  EXPECT_THAT(RunTask(pool, hostile::kConnectTcp, listener.port()),
              StartsWith("failed: Operation not permitted"));
  pool.Terminate();
}

// The repository's test plugins, sandboxed: the math plugin's tasks (maps,
// chunks, large arguments and results through shared memory), the faults
// plugin's errors and crashes, and the probe plugin.
TEST_F(SandboxTest, MathFaultsAndProbePluginsRunSandboxed) {
  PoolOptions o = testing::TestPoolOptions(2);
  o.sandbox = true;
  o.forward_worker_stderr = false;
  ProcessPool pool = MustCreate(o);
  std::vector<int> xs(200), ys(200);
  for (int i = 0; i < 200; ++i) xs[i] = ys[i] = i;
  absl::StatusOr<std::vector<int>> sums = pool.MapAll(MustTask(pool, math::kAdd), xs, ys);
  ASSERT_TRUE(sums.ok()) << sums.status();
  EXPECT_EQ((*sums)[199], 398);
  EXPECT_EQ(pool.Submit(MustTask(pool, math::kSlowAdd), 1, 2).Get(kWait), 3);
  EXPECT_EQ(pool.Submit(MustTask(pool, math::kSumPrimesBelow), 100).Get(kWait), 1060);
  const std::string big(4 << 20, 'x');  // crosses through shared memory both ways
  EXPECT_EQ(pool.Submit(MustTask(pool, math::kIdentity), big).Get(kWait), big);
  EXPECT_EQ(pool.Submit(MustTask(pool, faults::kHuge), int64_t{8} << 20).Get(kWait).size(),
            size_t{8} << 20);
  EXPECT_EQ(pool.Submit(MustTask(pool, probe::kAdd3), 1, 2, 3).Get(kWait), 6);
  EXPECT_EQ(pool.Submit(MustTask(pool, faults::kSleepMs), 5).Get(kWait), 5);
  EXPECT_EQ(pool.Submit(MustTask(pool, faults::kChatter), 3).Get(kWait), 3);
  EXPECT_GT(pool.Submit(MustTask(pool, faults::kHog), 16).Get(kWait), 0);
  EXPECT_EQ(pool.Submit(MustTask(pool, faults::kThrow), std::string("no")).Result(kWait)
                .status().code(),
            absl::StatusCode::kUnknown);
  absl::Status abort = pool.Submit(MustTask(pool, faults::kAbort), 0).Result(kWait).status();
  EXPECT_THAT(abort.message(), HasSubstr("SIGABRT")) << abort;
  absl::Status segv = pool.Submit(MustTask(pool, faults::kSegfault), 0).Result(kWait).status();
  EXPECT_THAT(segv.message(), HasSubstr("SIGSEGV")) << segv;
  EXPECT_EQ(pool.Submit(MustTask(pool, math::kAdd), 2, 2).Get(kWait), 4);
  EXPECT_THAT(pool.Stats().sandbox, HasSubstr("seccomp"));
  pool.Terminate();
}

// Retiring workers by task count and by memory (read from /proc/self/statm
// after each task) works inside the sandbox, and so do their replacements.
TEST_F(SandboxTest, WorkersRetireAndAreReplacedSandboxed) {
  PoolOptions o = testing::TestPoolOptions(1);
  o.sandbox = true;
  o.max_worker_rss_bytes = uint64_t{64} << 20;
  o.max_tasks_per_child = 3;
  ProcessPool pool = MustCreate(o);
  std::set<int> pids;
  for (int i = 0; i < 6; ++i) pids.insert(pool.Submit(MustTask(pool, faults::kPid), i).Get(kWait));
  EXPECT_EQ(pids.size(), 2u);
  const int before = pool.Submit(MustTask(pool, faults::kPid), 0).Get(kWait);
  EXPECT_EQ(pool.Submit(MustTask(pool, faults::kHog), 100).Get(absl::Seconds(60)), 100);
  EXPECT_NE(pool.Submit(MustTask(pool, faults::kPid), 0).Get(kWait), before);
  EXPECT_TRUE(testing::WaitUntil([&] {
    const PoolStats stats = pool.Stats();
    for (const std::string& why : stats.workers[0].restart_reasons) {
      if (absl::StrContains(why, "resident memory")) return true;
    }
    return false;
  }));
  EXPECT_THAT(pool.Stats().sandbox, HasSubstr("seccomp"));
  pool.Terminate();
}

TEST_F(SandboxTest, OptionsAreChecked) {
  PoolOptions o = HostileOptions(false);
  o.sandbox_paths = {{"/tmp", false}};
  absl::StatusOr<ProcessPool> p = ProcessPool::Create(o);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status().message(), HasSubstr("PoolOptions::sandbox"));

  o = HostileOptions(true);
  o.sandbox_paths = {{"", true}};
  p = ProcessPool::Create(o);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status().message(), HasSubstr("PoolOptions::sandbox_paths[0].path"));

  o.sandbox_paths = {{TempPath("missing"), false}};
  p = ProcessPool::Create(o);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kNotFound) << p.status();
  EXPECT_THAT(p.status().message(), HasSubstr("PoolOptions::sandbox_paths"));

  o = HostileOptions(true);
  o.sandbox_on_denied = static_cast<SandboxDenial>(7);
  p = ProcessPool::Create(o);
  EXPECT_THAT(p.status().message(), HasSubstr("PoolOptions::sandbox_on_denied"));
}

// ---------------------------------------------------------------------------
// The counter-test: the same attempts without the sandbox succeed.

TEST(NoSandboxTest, EveryEscapeSucceeds) {
  Watchdog watchdog(absl::Seconds(90));
  PoolOptions o = HostileOptions(false);
  o.forward_worker_stderr = false;
  ProcessPool pool = MustCreate(o);
  std::string home;
  const std::string key = MakeKey(&home);
  Listener listener;
  const std::string tmp = SystemTempPath();
  const std::string marker = TempPath("exec_marker");

  EXPECT_EQ(RunTask(pool, hostile::kReadFile, key), "succeeded: PRIVATE KEY 1234\n");
  EXPECT_EQ(RunTask(pool, hostile::kWriteFile, tmp), "succeeded");
  EXPECT_TRUE(Exists(tmp));
  ::unlink(tmp.c_str());
  EXPECT_EQ(RunTask(pool, hostile::kConnectTcp, listener.port()), "succeeded");
  EXPECT_TRUE(listener.Connected());
  EXPECT_EQ(RunTask(pool, hostile::kPtraceParent, 0), "succeeded");
  EXPECT_EQ(RunTask(pool, hostile::kSignalParent, 0), "succeeded");
  const std::string forked = RunTask(pool, hostile::kForkSurvivor, 30);
  ASSERT_THAT(forked, StartsWith("succeeded: pid "));
  int pid = 0;
  ASSERT_TRUE(absl::SimpleAtoi(forked.substr(15), &pid)) << forked;
  EXPECT_EQ(::kill(pid, 0), 0) << "the forked process outlives its task";
  ::kill(pid, SIGKILL);
  // The shell replaces the worker: the task fails as a lost worker, and
  // the shell ran.
  EXPECT_THAT(RunTask(pool, hostile::kExecShell, marker), StartsWith("task error: "));
  EXPECT_TRUE(testing::WaitUntil([&] { return Exists(marker); }));
  EXPECT_EQ(pool.Stats().sandbox, "off");
  pool.Terminate();
}

}  // namespace
}  // namespace procpool
