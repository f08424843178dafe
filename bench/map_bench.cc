// Bulk map of a trivial task, add(x, y), over 1,000,000 pairs with 2
// workers: automatic batching (chunksize 0) and chunksize 1 (also over
// 100,000 pairs, which gives the same rate in a tenth of the time). The floor:
// the same adds done by 2 child processes fed over socketpairs, with no
// framing or serialization: (x, y) records written in batches, x + y
// written back.
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <numeric>
#include <optional>
#include <vector>

#include "bench/bench_util.h"
#include "plugins/math/math.h"

namespace procpool::bench {
namespace {

constexpr int kPairs = 1'000'000;

void BM_MapAdd(benchmark::State& state) {
  const int chunksize = static_cast<int>(state.range(0));
  const int n = static_cast<int>(state.range(1));
  auto pool = MakePool(state, 2);
  if (!pool) return;
  auto add = GetTask(state, *pool, math::kAdd);
  if (!add) return;
  std::vector<int> xs(n), ys(n);
  std::iota(xs.begin(), xs.end(), 0);
  std::iota(ys.begin(), ys.end(), 1);
  MapOptions opts;
  opts.chunksize = chunksize;
  const double cpu0 = ProcessCpuSeconds();
  for (auto _ : state) {
    int64_t sum = 0;
    for (int r : pool->Map(opts, *add, xs, ys)) sum += r;
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * n);
  // The caller's whole process (consumer and I/O threads) per task.
  state.counters["caller_cpu_us_per_task"] =
      1e6 * (ProcessCpuSeconds() - cpu0) / static_cast<double>(state.iterations() * n);
}
BENCHMARK(BM_MapAdd)
    ->ArgNames({"chunksize", "pairs"})
    ->Args({0, kPairs})
    ->Args({1, kPairs})
    // The same rate in a tenth of the time, for //bench:compare.
    ->Args({1, kPairs / 10})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// What the sandbox (PoolOptions::sandbox: seccomp filter, Landlock,
// dropped capabilities) costs a map of tiny tasks: BM_MapAdd's map with
// automatic batching, run on a sandboxed pool and on an unconfined one of
// the same options, alternately in every iteration (`rounds` maps each,
// the order flipped every round), so that both see the same machine.
// items_per_second is the sandboxed pool's rate; the counters give both
// rates and sandboxed_vs_plain, the ratio of the summed times
// (//bench:compare's row map_small_tasks_sandboxed_per_s).
void BM_MapAddSandboxed(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const int rounds = static_cast<int>(state.range(1));
  PoolOptions plain_options = BenchPoolOptions(2);
  PoolOptions sandboxed_options = plain_options;
  sandboxed_options.sandbox = true;
  absl::StatusOr<ProcessPool> pools[2] = {ProcessPool::Create(plain_options),
                                          ProcessPool::Create(sandboxed_options)};
  for (const auto& pool : pools) {
    if (!pool.ok()) {
      state.SkipWithError(pool.status().ToString().c_str());
      return;
    }
  }
  if (pools[1]->Stats().sandbox == "off") {
    state.SkipWithError("the sandboxed pool reports no sandbox");
    return;
  }
  std::optional<TaskHandle<int(int, int)>> adds[2] = {GetTask(state, *pools[0], math::kAdd),
                                                      GetTask(state, *pools[1], math::kAdd)};
  if (!adds[0] || !adds[1]) return;
  std::vector<int> xs(n), ys(n);
  std::iota(xs.begin(), xs.end(), 0);
  std::iota(ys.begin(), ys.end(), 1);
  double seconds[2] = {0, 0};
  for (auto _ : state) {
    double iteration[2] = {0, 0};
    for (int r = 0; r < 2 * rounds; ++r) {
      const int k = (r + r / 2) % 2;  // plain, sandboxed, sandboxed, plain, ...
      const auto t0 = std::chrono::steady_clock::now();
      int64_t sum = 0;
      for (int v : pools[k]->Map(*adds[k], xs, ys)) sum += v;
      benchmark::DoNotOptimize(sum);
      iteration[k] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    state.SetIterationTime(iteration[1] / rounds);
    seconds[0] += iteration[0];
    seconds[1] += iteration[1];
  }
  const double maps = static_cast<double>(state.iterations()) * rounds;
  state.SetItemsProcessed(state.iterations() * n);
  state.counters["plain_per_s"] = maps * n / seconds[0];
  state.counters["sandboxed_per_s"] = maps * n / seconds[1];
  state.counters["sandboxed_vs_plain"] = seconds[0] / seconds[1];
}
BENCHMARK(BM_MapAddSandboxed)
    ->ArgNames({"pairs", "rounds"})
    ->Args({kPairs, 4})
    // At least 0.5 s of maps per repetition, whatever --benchmark_min_time
    // says (//bench:compare gives this binary 0.01 s): one iteration of 4
    // maps a side was too few to tell 5% on this VM.
    ->MinTime(0.5)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// `batch` records per write, at most max(2 * batch, 32) records in flight
// per child, `children` children, `n` records in all.
void BM_SocketpairSmallMessages(benchmark::State& state) {
  const size_t batch = static_cast<size_t>(state.range(0));
  const int children = static_cast<int>(state.range(1));
  const size_t n = static_cast<size_t>(state.range(2));
  const size_t window = std::max<size_t>(2 * batch, 32);
  std::vector<int32_t> records(2 * n);
  for (size_t i = 0; i < n; ++i) {
    records[2 * i] = static_cast<int32_t>(i);
    records[2 * i + 1] = static_cast<int32_t>(i + 1);
  }
  std::vector<Peer> peers;
  for (int k = 0; k < children; ++k) peers.push_back(ForkPeer(AddRecordsBody));
  std::vector<pollfd> pfds(children);
  for (int k = 0; k < children; ++k) pfds[k] = pollfd{peers[k].fd, POLLIN, 0};
  std::vector<char> inbuf(256 << 10);
  for (auto _ : state) {
    std::vector<size_t> sent(children, 0), got_bytes(children, 0);
    size_t next = 0, done = 0;
    int64_t checksum = 0;
    while (done < n) {
      for (int k = 0; k < children; ++k) {
        while (next < n && sent[k] - got_bytes[k] / 4 + batch <= window) {
          size_t b = std::min(batch, n - next);
          if (!WriteAll(peers[k].fd, &records[2 * next], 8 * b)) {
            state.SkipWithError("peer gone");
            return;
          }
          sent[k] += b;
          next += b;
        }
      }
      if (::poll(pfds.data(), pfds.size(), -1) < 0 && errno != EINTR) break;
      for (int k = 0; k < children; ++k) {
        if (!(pfds[k].revents & POLLIN)) continue;
        ssize_t r = ::read(peers[k].fd, inbuf.data(), inbuf.size());
        if (r <= 0) {
          state.SkipWithError("peer gone");
          return;
        }
        // Results may arrive split; only whole ints count.
        size_t before = got_bytes[k] / 4;
        got_bytes[k] += static_cast<size_t>(r);
        done += got_bytes[k] / 4 - before;
        checksum += inbuf[0];
      }
    }
    benchmark::DoNotOptimize(checksum);
  }
  for (Peer& p : peers) ClosePeer(p);
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
}
BENCHMARK(BM_SocketpairSmallMessages)
    ->ArgNames({"batch", "children", "records"})
    ->Args({4096, 2, kPairs})
    ->Args({1, 2, 100'000})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace procpool::bench
