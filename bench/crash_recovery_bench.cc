// Crash recovery, 2 workers. Each iteration has both workers running a
// `hold` task (each reports its pid through a FIFO, then blocks), SIGKILLs
// one of them and measures, from the kill() call:
//   - the iteration time (manual): until the killed worker's future has
//     failed, as seen by a thread blocked in Wait(FIRST_COMPLETED);
//   - to_pids_ms: until WorkerPids() lists 2 workers again, the victim not
//     among them (polled every 20 us);
//   - to_serving_ms: until a task submitted after that has come back from
//     the replacement (the other worker is still held, so only the
//     replacement can run it).
// The floors: SIGKILL of a forked child until its socketpair reads EOF, and
// that plus posix_spawn of a tiny helper until it writes a byte.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <cerrno>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_tasks.h"
#include "bench/bench_util.h"

extern char** environ;

namespace procpool::bench {
namespace {

void SleepMicros(long us) {
  timespec ts{0, us * 1000};
  ::nanosleep(&ts, nullptr);
}

// Reads a 4-byte pid from a non-blocking FIFO within `timeout_ms`.
bool ReadPid(int fd, int* pid, int timeout_ms) {
  size_t have = 0;
  char* p = reinterpret_cast<char*>(pid);
  while (have < sizeof(*pid)) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, timeout_ms) <= 0) return false;
    ssize_t r = ::read(fd, p + have, sizeof(*pid) - have);
    if (r > 0) have += static_cast<size_t>(r);
  }
  return true;
}

// Args: zygote (0: StartMethod::kSpawn, 1: kZygote), slow_plugin (1: the
// pool also loads libslow_load.so, 300 ms to load).
void BM_CrashRecovery(benchmark::State& state) {
  PoolOptions opts = BenchPoolOptions(2);
  if (state.range(0) != 0) opts.start_method = StartMethod::kZygote;
  if (state.range(1) != 0) opts.plugins.push_back(Runfile("bench/libslow_load.so"));
  absl::StatusOr<ProcessPool> created = ProcessPool::Create(opts);
  if (!created.ok()) {
    state.SkipWithError(created.status().ToString().c_str());
    return;
  }
  std::optional<ProcessPool> pool(*std::move(created));
  auto hold = GetTask(state, *pool, kHold);
  auto pid_task = GetTask(state, *pool, kPid);
  if (!hold || !pid_task) return;
  char tmpl[] = "/tmp/procpool_crash_bench_XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    state.SkipWithError("mkdtemp");
    return;
  }
  const std::string dir = tmpl;
  ::mkfifo((dir + "/pids").c_str(), 0600);
  ::mkfifo((dir + "/release").c_str(), 0600);
  // O_RDWR: opening never blocks, and the FIFOs always have a reader and a
  // writer, so the tasks' opens never block either.
  int pids_fd = ::open((dir + "/pids").c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  int release_fd = ::open((dir + "/release").c_str(), O_RDWR | O_CLOEXEC);
  double to_pids = 0, to_serving = 0;
  int64_t n = 0;
  for (auto _ : state) {
    std::vector<Future<int>> fs = {pool->Submit(*hold, dir),
                                   pool->Submit(*hold, dir)};
    int victim = 0, survivor = 0;
    if (!ReadPid(pids_fd, &victim, 10'000) || !ReadPid(pids_fd, &survivor, 10'000)) {
      state.SkipWithError("the hold tasks did not both start");
      break;
    }
    // Hold a while before the kill. The holds then dominate the pool's
    // average task time (well over 1 ms), so the pool sends one task at a
    // time and nothing to a busy worker: the task submitted after the kill
    // can only go to the replacement. Without this the average fell below
    // 1 ms (the quick pid tasks), the pool pipelined, and a hold that had
    // run only a few ms could have that task queued behind it: it then
    // waited for the release (a 10 s timeout here) instead of measuring
    // the replacement.
    SleepMicros(20'000);
    const double t0 = NowSeconds();
    ::kill(victim, SIGKILL);
    WaitResult wr = Wait(fs, FIRST_COMPLETED, absl::Seconds(10));
    const double t1 = NowSeconds();
    if (wr.done.size() != 1 || fs[wr.done[0]].status().ok()) {
      state.SkipWithError("the killed worker's future did not fail alone");
      break;
    }
    double t2 = 0;
    while (true) {
      std::vector<int> pids = pool->WorkerPids();
      if (pids.size() == 2 && std::find(pids.begin(), pids.end(), victim) == pids.end()) {
        t2 = NowSeconds();
        break;
      }
      if (NowSeconds() - t0 > 10) break;
      SleepMicros(20);
    }
    absl::StatusOr<int> served = pool->Submit(*pid_task, 0).Result(absl::Seconds(10));
    const double t3 = NowSeconds();
    WriteAll(release_fd, "r", 1);  // lets the survivor's hold return
    fs[wr.not_done[0]].Wait();
    if (t2 == 0 || !served.ok() || *served == survivor || *served == victim) {
      const std::string why =
          t2 == 0 ? std::string("no replacement was listed within 10 s")
          : !served.ok() ? "the task for the replacement failed: " + served.status().ToString()
                         : "the task ran on pid " + std::to_string(*served) + ", not on the replacement";
      state.SkipWithError(("no replacement served a task: " + why).c_str());
      break;
    }
    state.SetIterationTime(t1 - t0);
    to_pids += t2 - t0;
    to_serving += t3 - t0;
    ++n;
  }
  ::close(pids_fd);
  ::close(release_fd);
  ::unlink((dir + "/pids").c_str());
  ::unlink((dir + "/release").c_str());
  ::rmdir(dir.c_str());
  state.SetItemsProcessed(state.iterations());
  if (n > 0) {
    state.counters["to_pids_ms"] = 1e3 * to_pids / static_cast<double>(n);
    state.counters["to_serving_ms"] = 1e3 * to_serving / static_cast<double>(n);
  }
}
BENCHMARK(BM_CrashRecovery)
    ->ArgNames({"zygote", "slow_plugin"})
    ->Args({0, 0})
    ->Args({1, 0})
    ->Args({0, 1})
    ->Args({1, 1})
    ->UseManualTime()
    ->Iterations(20)
    ->Unit(benchmark::kMillisecond);

// The floor for crash_to_error_ms that a pool cannot go below: SIGKILL of a
// ready worker (a pool of 1, running `hold`) until its descriptors read EOF,
// which is the first moment anyone can learn of its death (the kernel tears
// down the address space first, then closes the descriptors). `hold` keeps
// the write end of a FIFO open; the benchmark polls the read end, while a
// second thread waits on the hold's future, so each iteration also gives
// the pool's own time (pool_ms: kill until the future failed) for the same
// death. The iteration time is kill -> EOF.
void BM_WorkerKillToEof(benchmark::State& state) {
  auto pool = MakePool(state, 1);
  if (!pool) return;
  auto hold = GetTask(state, *pool, kHold);
  if (!hold) return;
  char tmpl[] = "/tmp/procpool_kill_bench_XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    state.SkipWithError("mkdtemp");
    return;
  }
  const std::string dir = tmpl;
  ::mkfifo((dir + "/pids").c_str(), 0600);
  ::mkfifo((dir + "/release").c_str(), 0600);
  ::mkfifo((dir + "/alive").c_str(), 0600);
  int pids_fd = ::open((dir + "/pids").c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  int release_fd = ::open((dir + "/release").c_str(), O_RDWR | O_CLOEXEC);
  // Read-only, so that EOF comes when the worker's write end is closed.
  int alive_fd = ::open((dir + "/alive").c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  double pool_total = 0, gap_total = 0;
  int64_t n = 0;
  for (auto _ : state) {
    Future<int> f = pool->Submit(*hold, dir);
    int victim = 0;
    if (!ReadPid(pids_fd, &victim, 10'000)) {
      state.SkipWithError("the hold task did not start");
      break;
    }
    double failed_at = 0;
    absl::Status status;
    std::thread waiter([&] {
      status = f.WaitFor(absl::Seconds(10)) ? f.status()
                                         : absl::DeadlineExceededError("10 s");
      failed_at = NowSeconds();
    });
    SleepMicros(20'000);  // as in BM_CrashRecovery; the waiter blocks, the worker reads
    const double t0 = NowSeconds();
    ::kill(victim, SIGKILL);
    pollfd pfd{alive_fd, POLLIN, 0};
    bool eof = false;
    char buf[16];
    while (::poll(&pfd, 1, 10'000) > 0) {
      if (::read(alive_fd, buf, sizeof(buf)) == 0) {
        eof = true;
        break;
      }
    }
    const double t1 = NowSeconds();
    waiter.join();
    if (!eof || status.ok()) {
      state.SkipWithError(!eof ? "no EOF from the killed worker within 10 s"
                               : "the killed worker's task did not fail");
      break;
    }
    state.SetIterationTime(t1 - t0);
    pool_total += failed_at - t0;
    gap_total += failed_at - t1;
    ++n;
  }
  ::close(pids_fd);
  ::close(release_fd);
  ::close(alive_fd);
  for (const char* f : {"/pids", "/release", "/alive"}) ::unlink((dir + f).c_str());
  ::rmdir(dir.c_str());
  state.SetItemsProcessed(state.iterations());
  if (n > 0) {
    state.counters["pool_ms"] = 1e3 * pool_total / static_cast<double>(n);
    state.counters["after_eof_ms"] = 1e3 * gap_total / static_cast<double>(n);
  }
}
BENCHMARK(BM_WorkerKillToEof)
    ->UseManualTime()
    ->Iterations(30)
    ->Unit(benchmark::kMillisecond);

// Kill -> EOF on the socketpair, seen by a thread blocked in poll().
double KillToEof() {
  Peer peer = ForkPeer(BlockBody);
  SleepMicros(200);  // let the child reach read()
  const double t0 = NowSeconds();
  ::kill(peer.pid, SIGKILL);
  pollfd pfd{peer.fd, POLLIN, 0};
  ::poll(&pfd, 1, 10'000);
  const double t1 = NowSeconds();
  ClosePeer(peer);
  return t1 - t0;
}

void BM_KillToEof(benchmark::State& state) {
  for (auto _ : state) state.SetIterationTime(KillToEof());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_KillToEof)->UseManualTime()->Iterations(50)->Unit(benchmark::kMillisecond);

// Kill -> EOF -> posix_spawn of the helper until it writes its byte.
void BM_KillToRespawnReady(benchmark::State& state) {
  const std::string helper = Runfile("bench/spawn_helper");
  char* argv[] = {const_cast<char*>(helper.c_str()), nullptr};
  for (auto _ : state) {
    Peer peer = ForkPeer(BlockBody);
    SleepMicros(200);
    const double t0 = NowSeconds();
    ::kill(peer.pid, SIGKILL);
    pollfd pfd{peer.fd, POLLIN, 0};
    ::poll(&pfd, 1, 10'000);
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) {
      state.SkipWithError("pipe2");
      break;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 3);
    pid_t pid;
    int rc = ::posix_spawn(&pid, helper.c_str(), &fa, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(p[1]);
    char c;
    bool ok = rc == 0 && ReadAll(p[0], &c, 1);
    const double t1 = NowSeconds();
    ::close(p[0]);
    if (rc == 0) ::waitpid(pid, nullptr, 0);
    ClosePeer(peer);
    if (!ok) {
      state.SkipWithError("helper did not start");
      break;
    }
    state.SetIterationTime(t1 - t0);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_KillToRespawnReady)
    ->UseManualTime()
    ->Iterations(50)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace procpool::bench
