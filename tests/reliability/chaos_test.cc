// Chaos: a map of 100,000 small tasks while a helper thread SIGKILLs a
// random worker every ~50 ms (and, in a second run, with SIGSEGV-ing tasks
// mixed in). Every future resolves exactly once, every task that was not
// on a killed worker returns the right value, the run ends, and afterwards
// no zombie and no leaked file descriptor is left.

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "plugins/faults/faults.h"
#include "pool/pool.h"
#include "tests/api/test_env.h"

namespace procpool {
namespace {

using ::procpool::testing::Checked;
using ::procpool::testing::Options;

int CountOpenFds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n - 1;  // the DIR's own descriptor
}

// Children of this process that are zombies.
int CountZombieChildren() {
  int zombies = 0;
  DIR* d = ::opendir("/proc");
  const std::string me = std::to_string(::getpid());
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream stat(std::string("/proc/") + e->d_name + "/stat");
    std::string line;
    std::getline(stat, line);
    size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string state, ppid;
    rest >> state >> ppid;
    if (ppid == me && state == "Z") ++zombies;
  }
  ::closedir(d);
  return zombies;
}

struct ChaosResult {
  int ok = 0;
  int killed = 0;
  int segv = 0;
  int crashing_failed = 0;  // crashing tasks that failed (SIGSEGV or SIGKILL)
  int kills_sent = 0;
};

// Maps crash_on(x, bad[x]) over kTasks inputs while killing workers.
ChaosResult RunChaos(int segv_every) {
  constexpr int kTasks = 100000;
  PoolOptions opts = Options(2);
  opts.forward_worker_stderr = false;
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(opts);
  EXPECT_TRUE(pool.ok()) << pool.status();
  if (!pool.ok()) return {};
  auto crash_on = Checked(*pool, faults::kCrashOn);

  std::atomic<bool> stop{false};
  std::atomic<int> kills{0};
  std::atomic<int> settled{0};  // futures resolved so far
  std::thread killer([&] {
    std::mt19937 rng(12345);
    int settled_at_last_kill = -1;
    while (!stop.load()) {
      // A kill every ~50 ms, but only once the pool got something done
      // since the last one: on a loaded machine (sanitizers, parallel
      // tests) starting a worker can take longer than 50 ms, and killing
      // every replacement before it serves would starve the run instead
      // of testing it.
      std::vector<int> pids = pool->WorkerPids();
      const int now = settled.load();
      if (!pids.empty() && now != settled_at_last_kill) {
        ::kill(pids[rng() % pids.size()], SIGKILL);
        kills.fetch_add(1);
        settled_at_last_kill = now;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });

  std::vector<Future<int>> futures;
  std::vector<std::atomic<int>> resolved(kTasks);
  futures.reserve(kTasks);
  for (int i = 0; i < kTasks; ++i) {
    int bad = (segv_every > 0 && i % segv_every == 7) ? i : -1;
    futures.push_back(pool->Submit(crash_on, i, bad));
    futures.back().AddDoneCallback([&resolved, &settled, i](const Future<int>&) {
      resolved[i].fetch_add(1);
      settled.fetch_add(1);
    });
  }
  ChaosResult out;
  for (int i = 0; i < kTasks; ++i) {
    absl::StatusOr<int> r = futures[i].Result(absl::Seconds(120));
    if (!r.ok() && r.status().code() == absl::StatusCode::kDeadlineExceeded) {
      // Where is it? Say what the pool holds, for the failure message.
      PoolStats st = pool->Stats();
      std::printf("stuck task %d: pending %llu, in flight %llu, workers:", i,
                  static_cast<unsigned long long>(st.pending),
                  static_cast<unsigned long long>(st.in_flight));
      for (const WorkerStats& w : st.workers) std::printf(" pid %d", w.pid);
      std::printf("\n");
    }
    const bool crashes = segv_every > 0 && i % segv_every == 7;
    if (r.ok()) {
      EXPECT_EQ(*r, i);
      EXPECT_FALSE(crashes) << i;
      ++out.ok;
      continue;
    }
    if (crashes) ++out.crashing_failed;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << i << ": " << r.status();
    std::string m(r.status().message());
    if (absl::StrContains(m, "SIGSEGV")) {
      EXPECT_EQ(i % segv_every, 7) << m;
      ++out.segv;
    } else {
      EXPECT_TRUE(absl::StrContains(m, "SIGKILL")) << m;
      ++out.killed;
    }
  }
  stop = true;
  killer.join();
  out.kills_sent = kills.load();
  for (int i = 0; i < kTasks; ++i) EXPECT_EQ(resolved[i].load(), 1) << i;
  return out;
}

TEST(ChaosTest, RandomSigkillsLoseNothingAndLeakNothing) {
  const int fds_before = CountOpenFds();
  ChaosResult r = RunChaos(/*segv_every=*/0);
  EXPECT_EQ(r.ok + r.killed, 100000);
  // Each SIGKILL fails at most the one task its worker was running.
  EXPECT_LE(r.killed, r.kills_sent);
  std::printf("chaos: %d kills sent, %d tasks failed with SIGKILL, %d ok\n",
              r.kills_sent, r.killed, r.ok);
  EXPECT_EQ(CountZombieChildren(), 0);
  EXPECT_EQ(CountOpenFds(), fds_before);
}

TEST(ChaosTest, RandomSigkillsWithSegfaultingTasksMixedIn) {
  const int fds_before = CountOpenFds();
  ChaosResult r = RunChaos(/*segv_every=*/1000);
  // Every crashing task fails: of SIGSEGV, or of SIGKILL if the killer got
  // its worker first. And only SIGKILLed workers fail other tasks.
  EXPECT_EQ(r.crashing_failed, 100);
  EXPECT_GE(r.segv, 100 - r.killed);
  EXPECT_EQ(r.ok + r.killed + r.segv, 100000);
  EXPECT_LE(r.killed, r.kills_sent);
  std::printf("chaos+segv: %d kills sent, %d SIGKILL failures, %d SIGSEGV, %d ok\n",
              r.kills_sent, r.killed, r.segv, r.ok);
  EXPECT_EQ(CountZombieChildren(), 0);
  EXPECT_EQ(CountOpenFds(), fds_before);
}

}  // namespace
}  // namespace procpool
