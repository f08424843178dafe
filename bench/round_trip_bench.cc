// Serial round trip: one no-op task at a time, the caller waiting on each
// result; beside it the floor, a raw socketpair ping-pong of 4 bytes
// between two processes, and the same ping-pong relayed through a second
// thread of the calling process (eventfd to wake it, a condition variable
// to hand the answer back): what a design in which the caller's request and
// answer pass through an I/O thread pays for that hop.
#include <sys/eventfd.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <thread>

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

void BM_SocketpairPingPongViaThread(benchmark::State& state) {
  Peer peer = ForkPeer(EchoPingBody);
  const int efd = ::eventfd(0, EFD_CLOEXEC);
  std::mutex mu;
  std::condition_variable cv;
  bool answered = false, failed = false;
  uint32_t value = 0;
  std::thread io([&] {
    uint64_t n;
    while (::read(efd, &n, sizeof(n)) == sizeof(n)) {
      uint32_t v;
      {
        std::lock_guard<std::mutex> l(mu);
        if (failed) return;  // told to stop
        v = value;
      }
      bool ok = WriteAll(peer.fd, &v, sizeof(v)) && ReadAll(peer.fd, &v, sizeof(v));
      {
        std::lock_guard<std::mutex> l(mu);
        value = v;
        answered = true;
        failed = !ok;
      }
      cv.notify_one();
      if (!ok) return;
    }
  });
  uint32_t v = 0;
  for (auto _ : state) {
    {
      std::lock_guard<std::mutex> l(mu);
      value = v;
      answered = false;
    }
    uint64_t one = 1;
    if (::write(efd, &one, sizeof(one)) != sizeof(one)) break;
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return answered; });
    if (failed) {
      state.SkipWithError("peer gone");
      break;
    }
    v = value + 1;
  }
  {
    std::lock_guard<std::mutex> l(mu);
    failed = true;
  }
  uint64_t one = 1;
  (void)!::write(efd, &one, sizeof(one));
  io.join();
  ::close(efd);
  ClosePeer(peer);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SocketpairPingPongViaThread)->UseRealTime();

}  // namespace
}  // namespace procpool::bench
