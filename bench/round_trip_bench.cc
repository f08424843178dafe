// Serial round trip: one no-op task at a time, the caller waiting on each
// result; beside it the floor, a raw socketpair ping-pong of 4 bytes
// between two processes.
#include "bench/bench_util.h"
#include "plugins/math/math.h"

namespace procpool::bench {
namespace {

void BM_RoundTripNoop(benchmark::State& state) {
  auto pool = MakePool(state, static_cast<int>(state.range(0)));
  if (!pool) return;
  auto noop = GetTask(state, *pool, math::kNoop);
  if (!noop) return;
  for (int i = 0; i < 1000; ++i) pool->Submit(*noop, i).Get();  // warm up
  int i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(pool->Submit(*noop, i++).Get());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RoundTripNoop)->ArgName("workers")->Arg(1)->Arg(2)->UseRealTime();

void BM_SocketpairPingPong(benchmark::State& state) {
  Peer peer = ForkPeer(EchoPingBody);
  uint32_t v = 0;
  for (auto _ : state) {
    if (!WriteAll(peer.fd, &v, sizeof(v)) || !ReadAll(peer.fd, &v, sizeof(v))) {
      state.SkipWithError("peer gone");
      break;
    }
    ++v;
  }
  ClosePeer(peer);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SocketpairPingPong)->UseRealTime();

}  // namespace
}  // namespace procpool::bench
