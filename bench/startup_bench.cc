// Pool start: create a pool of 2 workers, get a first result, shut down.
// The floor: posix_spawn 2 tiny helpers (static, one write) and wait until
// each has written a byte to its pipe, then reap them. Beside it, for the
// analysis: fork() of this process until the children write their byte
// (what a fork-server design would pay), and posix_spawn of the real worker
// executable with --help, which loads its shared libraries, prints its
// usage and exits (what exec-ing the worker costs before it does anything).
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "bench/bench_tasks.h"
#include "plugins/math/math.h"

extern char** environ;

namespace procpool::bench {
namespace {

void BM_PoolStart(benchmark::State& state) {
  PoolOptions opts = BenchPoolOptions(static_cast<int>(state.range(0)));
  if (state.range(1) != 0) opts.start_method = StartMethod::kZygote;
  double create_s = 0, first_s = 0;
  for (auto _ : state) {
    double t0 = NowSeconds();
    absl::StatusOr<ProcessPool> pool = ProcessPool::Create(opts);
    if (!pool.ok()) {
      state.SkipWithError(pool.status().ToString().c_str());
      break;
    }
    double t1 = NowSeconds();
    benchmark::DoNotOptimize(pool->Submit(math::kNoop, 1).Get());
    double t2 = NowSeconds();
    pool->Shutdown();
    create_s += t1 - t0;
    first_s += t2 - t0;
  }
  state.SetItemsProcessed(state.iterations());
  // Means over the iterations, in ms: Create() alone, and up to the first
  // result (shutdown excluded).
  const double n = static_cast<double>(std::max<int64_t>(1, state.iterations()));
  state.counters["create_ms"] = 1e3 * create_s / n;
  state.counters["first_result_ms"] = 1e3 * first_s / n;
}
BENCHMARK(BM_PoolStart)->ArgNames({"workers", "zygote"})->Args({2, 0})->Args({2, 1})->UseRealTime();

// The proportional set size (PSS, /proc/PID/smaps_rollup) of a pool's
// processes, in bytes: the workers and, with kZygote, the template and the
// spare worker.
double PoolPssBytes(const ProcessPool& pool) {
  std::vector<int> pids = pool.WorkerPids();
  const PoolStats stats = pool.Stats();
  const std::string prefix = "zygote (template pid ";
  if (stats.start_method.rfind(prefix, 0) == 0) {
    pids.push_back(std::stoi(stats.start_method.substr(prefix.size())));
  }
  if (stats.spare_worker_pid != 0) pids.push_back(stats.spare_worker_pid);
  double total = 0;
  for (int pid : pids) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/smaps_rollup");
    for (std::string line; std::getline(f, line);) {
      if (line.rfind("Pss:", 0) == 0) total += 1024.0 * std::stod(line.substr(4));
    }
  }
  return total;
}

// 2 workers of a plugin whose preload builds 200 MiB of read-only tables,
// each worker having read every page of them: the pool's total PSS. With
// kSpawn each worker builds its own copy; with kZygote the template builds
// the one the workers share.
void BM_SharedTablesPss(benchmark::State& state) {
  PoolOptions opts = BenchPoolOptions(2);
  opts.preload = Initializer::Of(kFillTables, 200);
  if (state.range(0) != 0) opts.start_method = StartMethod::kZygote;
  double pss = 0;
  for (auto _ : state) {
    absl::StatusOr<ProcessPool> pool = ProcessPool::Create(opts);
    if (!pool.ok()) {
      state.SkipWithError(pool.status().ToString().c_str());
      break;
    }
    std::vector<Future<uint64_t>> reads;
    for (int i = 0; i < 8; ++i) reads.push_back(pool->Submit(kReadTables, 0));
    for (Future<uint64_t>& r : reads) benchmark::DoNotOptimize(r.Get());
    // With kZygote the spare worker counts too: wait (at most 1 s) for it.
    for (int i = 0; i < 1000 && opts.start_method == StartMethod::kZygote &&
                    pool->Stats().spare_worker_pid == 0;
         ++i) {
      ::usleep(1000);
    }
    pss = PoolPssBytes(*pool);
    pool->Shutdown();
  }
  state.counters["pss_total_mib"] = pss / (1 << 20);
}
BENCHMARK(BM_SharedTablesPss)->ArgName("zygote")->Arg(0)->Arg(1)->Iterations(3)->UseRealTime();

void BM_PosixSpawnUntilReady(benchmark::State& state) {
  const std::string helper = Runfile("bench/spawn_helper");
  const int n = static_cast<int>(state.range(0));
  char* argv[] = {const_cast<char*>(helper.c_str()), nullptr};
  std::vector<int> fds(n);
  std::vector<pid_t> pids(n);
  for (auto _ : state) {
    for (int i = 0; i < n; ++i) {
      int p[2];
      if (::pipe2(p, O_CLOEXEC) != 0) {
        state.SkipWithError("pipe2");
        return;
      }
      posix_spawn_file_actions_t fa;
      posix_spawn_file_actions_init(&fa);
      posix_spawn_file_actions_adddup2(&fa, p[1], 3);
      int rc = ::posix_spawn(&pids[i], helper.c_str(), &fa, nullptr, argv, environ);
      posix_spawn_file_actions_destroy(&fa);
      ::close(p[1]);
      if (rc != 0) {
        state.SkipWithError("posix_spawn");
        return;
      }
      fds[i] = p[0];
    }
    for (int i = 0; i < n; ++i) {
      char c;
      if (!ReadAll(fds[i], &c, 1)) state.SkipWithError("helper did not report");
      ::close(fds[i]);
    }
    for (int i = 0; i < n; ++i) {
      int st;
      while (::waitpid(pids[i], &st, 0) < 0 && errno == EINTR) {
      }
    }
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_PosixSpawnUntilReady)->ArgName("processes")->Arg(1)->Arg(2)->UseRealTime();

void BM_ForkUntilReady(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  std::vector<int> fds(n);
  std::vector<pid_t> pids(n);
  for (auto _ : state) {
    for (int i = 0; i < n; ++i) {
      int p[2];
      if (::pipe2(p, O_CLOEXEC) != 0) {
        state.SkipWithError("pipe2");
        return;
      }
      pids[i] = ::fork();
      if (pids[i] == 0) {
        char c = 'r';
        ::_exit(::write(p[1], &c, 1) == 1 ? 0 : 1);
      }
      ::close(p[1]);
      fds[i] = p[0];
    }
    for (int i = 0; i < n; ++i) {
      char c;
      if (!ReadAll(fds[i], &c, 1)) state.SkipWithError("child did not report");
      ::close(fds[i]);
    }
    for (int i = 0; i < n; ++i) {
      int st;
      while (::waitpid(pids[i], &st, 0) < 0 && errno == EINTR) {
      }
    }
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_ForkUntilReady)->ArgName("processes")->Arg(2)->UseRealTime();

void BM_PosixSpawnWorkerHelp(benchmark::State& state) {
  const std::string worker = Runfile("pool/procpool_worker");
  char* argv[] = {const_cast<char*>(worker.c_str()), const_cast<char*>("--help"),
                  nullptr};
  for (auto _ : state) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = ::posix_spawn(&pid, worker.c_str(), &fa, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      state.SkipWithError("posix_spawn");
      break;
    }
    int st;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PosixSpawnWorkerHelp)->UseRealTime();

}  // namespace
}  // namespace procpool::bench
