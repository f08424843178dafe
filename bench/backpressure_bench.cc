// The backpressure load of issue 16 (tests/testing/backpressure_load.h):
// 8 producer threads submit as fast as they can into a pool of 2 workers
// whose tasks sleep 1 ms, 1 task in 100 segfaulting its worker.
//
//   BM_BackpressureLoad: PoolOptions::max_pending = 64, 30 s
//     ($PROCPOOL_BACKPRESSURE_SECONDS overrides). Counters: submit-to-result
//     latency p50/p99/p999/max (us, from the call to Submit, so its wait for
//     a slot included), time inside Submit p50/p99, accepted submissions
//     per second, the caller's RSS growth after a 1 s warm-up (MiB), and
//     the check that every task resolved exactly once (lost, twice, wrong:
//     all 0).
//   BM_UnboundedLoad: the same producers with max_pending = 0 for 0.5 s
//     (at most 2^20 tasks), then
//     Shutdown(cancel_pending): how fast the producers submit on their own
//     (against the pool's drain rate: the "10x slower" of the issue) and
//     how the caller's RSS grows without the bound.
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <utility>
#include <string>

#include "bench/bench_util.h"
#include "tests/testing/backpressure_load.h"

namespace procpool::bench {
namespace {

using ::procpool::testing::LoadOptions;
using ::procpool::testing::LoadResult;

std::optional<ProcessPool> LoadPool(benchmark::State& state, int64_t max_pending) {
  PoolOptions o;
  o.max_workers = 2;
  o.plugins = {Runfile("plugins/faults/libfaults.so")};
  o.max_pending = max_pending;
  o.forward_worker_stderr = false;
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(o);
  if (!pool.ok()) {
    state.SkipWithError(pool.status().ToString().c_str());
    return std::nullopt;
  }
  return std::move(*pool);
}

void Report(benchmark::State& state, const char* name, const LoadResult& r) {
  state.SetIterationTime(r.seconds);
  state.counters["p50_us"] = r.p50_us;
  state.counters["p99_us"] = r.p99_us;
  state.counters["p999_us"] = r.p999_us;
  state.counters["max_us"] = r.max_us;
  state.counters["submit_p50_us"] = r.submit_p50_us;
  state.counters["submit_p99_us"] = r.submit_p99_us;
  state.counters["submitted_per_s"] = r.submit_per_s;
  state.counters["rss_growth_mib"] = r.rss_growth_mib;
  state.counters["submitted"] = static_cast<double>(r.submitted);
  state.counters["lost"] = static_cast<double>(r.submitted - r.resolved);
  state.counters["twice"] = static_cast<double>(r.resolved_twice);
  state.counters["wrong"] = static_cast<double>(r.wrong);
  state.counters["crashed"] = static_cast<double>(r.crashed);
  std::fprintf(stderr, "%s: %s\n", name, r.Summary().c_str());
  if (r.resolved != r.submitted || r.resolved_twice != 0 || r.wrong != 0) {
    state.SkipWithError(("a task was lost, resolved twice or wrong: " + r.Summary()).c_str());
  }
}

void BM_BackpressureLoad(benchmark::State& state) {
  auto pool = LoadPool(state, 64);
  if (!pool) return;
  LoadOptions lo;
  lo.duration = absl::Seconds(30);
  if (const char* s = std::getenv("PROCPOOL_BACKPRESSURE_SECONDS")) {
    lo.duration = absl::Seconds(std::atof(s));
  }
  lo.warmup = absl::Seconds(1);
  lo.sample_every = absl::Milliseconds(50);
  for (auto _ : state) {
    Report(state, "BM_BackpressureLoad", testing::RunBackpressureLoad(*pool, lo));
  }
}
BENCHMARK(BM_BackpressureLoad)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

void BM_UnboundedLoad(benchmark::State& state) {
  auto pool = LoadPool(state, 0);
  if (!pool) return;
  LoadOptions lo;
  // Half a second, at most 2^20 tasks: unbounded, the queue takes about
  // 750 bytes a task, and the machine is shared.
  lo.duration = absl::Milliseconds(500);
  lo.warmup = absl::Milliseconds(100);
  lo.sample_every = absl::Milliseconds(10);
  lo.cancel_at_end = true;
  lo.capacity = uint64_t{1} << 20;
  for (auto _ : state) {
    Report(state, "BM_UnboundedLoad", testing::RunBackpressureLoad(*pool, lo));
  }
}
BENCHMARK(BM_UnboundedLoad)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace procpool::bench
