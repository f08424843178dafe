// The MPI backend beside the local one, in one process: rank 0 runs the
// benchmarks, every other rank is a node agent with one worker. Launch it
// with mpirun (bench/mpi_bench.sh does, with the flags of docs/DISTRIBUTED.md):
//
//   bazel build -c opt //bench:mpi_bench
//   bench/mpi_bench.sh                 # shared memory between the ranks
//   bench/mpi_bench.sh --mca btl tcp,self   # TCP over loopback
//
// Each BM_Mpi* benchmark has a BM_Local* twin with as many workers (one per
// agent rank) on rank 0's machine, so the difference is what the MPI hop
// (front end -> agent -> its worker and back) costs.
#include <cstdio>
#include <numeric>
#include <optional>
#include <vector>

#include "bench/bench_util.h"
#include "plugins/math/math.h"
#include "pool/mpi.h"
#include "pool/tuning.h"

namespace procpool::bench {
namespace {

int g_agents = 0;  // MPI ranks - 1

std::optional<ProcessPool> MakeBackendPool(benchmark::State& state, bool mpi) {
  PoolOptions opts = BenchPoolOptions(mpi ? 1 : g_agents);
  if (mpi) opts.backend = PoolBackend::kMpi;
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(std::move(opts));
  if (!pool.ok()) {
    state.SkipWithError(pool.status().ToString().c_str());
    return std::nullopt;
  }
  return *std::move(pool);
}

// One no-op task at a time, the caller waiting on each result.
void RoundTrip(benchmark::State& state, bool mpi) {
  auto pool = MakeBackendPool(state, mpi);
  if (!pool) return;
  auto noop = GetTask(state, *pool, math::kNoop);
  if (!noop) return;
  for (int i = 0; i < 500; ++i) pool->Submit(*noop, i).Get();  // warm up
  int i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(pool->Submit(*noop, i++).Get());
  state.SetItemsProcessed(state.iterations());
  state.counters["workers"] = pool->num_workers();
}
void BM_MpiRoundTripNoop(benchmark::State& state) { RoundTrip(state, true); }
void BM_LocalRoundTripNoop(benchmark::State& state) { RoundTrip(state, false); }
BENCHMARK(BM_MpiRoundTripNoop)->UseRealTime();
BENCHMARK(BM_LocalRoundTripNoop)->UseRealTime();

// A lazy Map of `range(0)` no-op tasks: tasks per second with automatic
// batching and the window the pool chooses.
void MapNoop(benchmark::State& state, bool mpi) {
  auto pool = MakeBackendPool(state, mpi);
  if (!pool) return;
  auto noop = GetTask(state, *pool, math::kNoop);
  if (!noop) return;
  std::vector<int> xs(static_cast<size_t>(state.range(0)));
  std::iota(xs.begin(), xs.end(), 0);
  for (int r : pool->Map(*noop, xs)) benchmark::DoNotOptimize(r);  // warm up
  for (auto _ : state) {
    int64_t sum = 0;
    for (int r : pool->Map(*noop, xs)) sum += r;
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
void BM_MpiMapNoop(benchmark::State& state) { MapNoop(state, true); }
void BM_LocalMapNoop(benchmark::State& state) { MapNoop(state, false); }
BENCHMARK(BM_MpiMapNoop)->ArgName("tasks")->Arg(20000)->UseRealTime();
BENCHMARK(BM_LocalMapNoop)->ArgName("tasks")->Arg(20000)->UseRealTime();

// Tasks of ~`range(0)` us of CPU each: how much of the workers' time the
// MPI backend keeps busy.
void MapSpin(benchmark::State& state, bool mpi) {
  auto pool = MakeBackendPool(state, mpi);
  if (!pool) return;
  auto spin = GetTask(state, *pool, math::kSpin);
  if (!spin) return;
  const int n = 2000;
  std::vector<int64_t> us(n, state.range(0));
  for (auto _ : state) {
    uint64_t sum = 0;
    for (uint64_t r : pool->Map(*spin, us)) sum += r;
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
void BM_MpiMapSpin(benchmark::State& state) { MapSpin(state, true); }
void BM_LocalMapSpin(benchmark::State& state) { MapSpin(state, false); }
BENCHMARK(BM_MpiMapSpin)->ArgName("task_us")->Arg(100)->UseRealTime();
BENCHMARK(BM_LocalMapSpin)->ArgName("task_us")->Arg(100)->UseRealTime();

}  // namespace
}  // namespace procpool::bench

int main(int argc, char** argv) {
  // Before MPI starts threads; the agent ranks (this same program) too.
  if (absl::Status s = procpool::TuneProcessForThroughput(); !s.ok()) {
    std::fprintf(stderr, "mpi_bench: %s\n", s.ToString().c_str());
  }
  absl::StatusOr<std::unique_ptr<procpool::mpi::Session>> mpi =
      procpool::mpi::Session::Init(&argc, &argv);
  if (!mpi.ok()) {
    std::fprintf(stderr, "mpi_bench: %s\n", mpi.status().ToString().c_str());
    return 1;
  }
  if (!(*mpi)->is_front_end()) return (*mpi)->ServeAsAgent();
  procpool::bench::g_agents = (*mpi)->size() - 1;
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
