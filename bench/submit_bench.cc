// Submit of 20,000 individual no-op tasks, then AsCompleted over their
// futures (concurrent.futures' submit + as_completed), 2 workers.
#include <vector>

#include "bench/bench_util.h"
#include "plugins/math/math.h"

namespace procpool::bench {
namespace {

void BM_SubmitAsCompleted(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  auto pool = MakePool(state, 2);
  if (!pool) return;
  auto noop = GetTask(state, *pool, math::kNoop);
  if (!noop) return;
  for (auto _ : state) {
    std::vector<Future<int>> fs;
    fs.reserve(n);
    for (int i = 0; i < n; ++i) fs.push_back(pool->Submit(*noop, i));
    int64_t sum = 0;
    for (const Completed<int>& c : AsCompleted(std::move(fs))) {
      sum += c.future.Get();
    }
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_SubmitAsCompleted)
    ->ArgName("tasks")
    ->Arg(20'000)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Submit alone (the futures resolve in the background, not timed): how
// fast the calling thread can queue work.
void BM_SubmitOnly(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  auto pool = MakePool(state, 2);
  if (!pool) return;
  auto noop = GetTask(state, *pool, math::kNoop);
  if (!noop) return;
  for (auto _ : state) {
    std::vector<Future<int>> fs;
    fs.reserve(n);
    for (int i = 0; i < n; ++i) fs.push_back(pool->Submit(*noop, i));
    state.PauseTiming();
    Wait(fs);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_SubmitOnly)
    ->ArgName("tasks")
    ->Arg(20'000)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace procpool::bench
