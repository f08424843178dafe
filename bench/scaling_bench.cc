// CPU-bound scaling: tasks of about 1 us, 10 us, 100 us, 1 ms and 10 ms of
// pure integer hashing, mapped with automatic batching over 1 and 2
// workers. Each run is 200 ms of single-core work (200,000 tasks of 1 us,
// 20 tasks of 10 ms). The work per task is a fixed round count calibrated
// once in this process (see bench_tasks.h), so it is the same in every
// worker and in the floor.
//
// The floor: the same tasks run by 1 or 2 forked processes with no
// communication at all; its 2-vs-1 ratio is what the hardware and the
// machine's other tenants allow.
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "bench/bench_tasks.h"
#include "bench/bench_util.h"

namespace procpool::bench {
namespace {

constexpr int64_t kWorkMicros = 200'000;

void Sizes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"micros", "workers"});
  for (int64_t us : {1, 10, 100, 1000, 10000}) {
    for (int64_t w : {1, 2}) b->Args({us, w});
  }
}

void BM_ScalingSpin(benchmark::State& state) {
  const int64_t micros = state.range(0);
  const int workers = static_cast<int>(state.range(1));
  const int64_t n = kWorkMicros / micros;
  const uint64_t rounds =
      static_cast<uint64_t>(MixRoundsPerMicro() * static_cast<double>(micros));
  auto pool = MakePool(state, workers);
  if (!pool) return;
  auto spin = GetTask(state, *pool, kSpinRounds);
  if (!spin) return;
  const std::vector<uint64_t> args(n, rounds);
  // One untimed pass, so the pool has measured the task's duration.
  for (uint64_t r : pool->Map(*spin, args)) benchmark::DoNotOptimize(r);
  const double cpu0 = ProcessCpuSeconds();
  for (auto _ : state) {
    uint64_t x = 0;
    for (uint64_t r : pool->Map(*spin, args)) x ^= r;
    benchmark::DoNotOptimize(x);
  }
  const double tasks = static_cast<double>(state.iterations() * n);
  state.SetItemsProcessed(state.iterations() * n);
  state.counters["rounds"] = static_cast<double>(rounds);
  // The caller's own CPU (its consuming thread and the pool's I/O thread;
  // not the workers, which are other processes) per task.
  state.counters["caller_cpu_us_per_task"] = 1e6 * (ProcessCpuSeconds() - cpu0) / tasks;
}
BENCHMARK(BM_ScalingSpin)->Apply(Sizes)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_ProcessesSpin(benchmark::State& state) {
  const int64_t micros = state.range(0);
  const int workers = static_cast<int>(state.range(1));
  const int64_t n = kWorkMicros / micros;
  const uint64_t rounds =
      static_cast<uint64_t>(MixRoundsPerMicro() * static_cast<double>(micros));
  for (auto _ : state) {
    std::vector<pid_t> pids;
    for (int w = 0; w < workers; ++w) {
      pid_t pid = ::fork();
      if (pid == 0) {
        int64_t mine = n / workers + (w < n % workers ? 1 : 0);
        uint64_t x = 0;
        for (int64_t i = 0; i < mine; ++i) {
          uint64_t r = Mix(rounds);
          benchmark::DoNotOptimize(r);
          x ^= r;
        }
        ::_exit(static_cast<int>(x & 1));
      }
      pids.push_back(pid);
    }
    for (pid_t pid : pids) {
      int st;
      while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
      }
    }
  }
  state.SetItemsProcessed(state.iterations() * n);
  state.counters["rounds"] = static_cast<double>(rounds);
}
BENCHMARK(BM_ProcessesSpin)->Apply(Sizes)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace procpool::bench
