// What this machine charges for the things a process pool does all the
// time, to read the other benchmarks by: a trivial system call, the first
// touch of a fresh page of anonymous memory (a page fault), with 4 KiB
// pages and with transparent huge pages asked for by madvise, and waking a
// blocked thread, with the cores idle and with them busy (as a pool's
// workers keep them).
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <thread>
#include <vector>

#include "bench/bench_util.h"

namespace procpool::bench {
namespace {

void BM_SyscallGetppid(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(::syscall(SYS_getppid));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SyscallGetppid);

// Maps 16 MiB, writes one byte per 4 KiB page, unmaps; items are pages.
void BM_FirstTouchPage(benchmark::State& state) {
  const bool huge = state.range(0) != 0;
  constexpr size_t kBytes = size_t{16} << 20, kAlign = size_t{2} << 20;
  for (auto _ : state) {
    void* m = ::mmap(nullptr, kBytes + kAlign, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
      state.SkipWithError("mmap");
      break;
    }
    char* p = reinterpret_cast<char*>(
        (reinterpret_cast<uintptr_t>(m) + kAlign - 1) & ~(kAlign - 1));
    if (huge) ::madvise(p, kBytes, MADV_HUGEPAGE);
    for (size_t i = 0; i < kBytes; i += 4096) p[i] = 1;
    benchmark::ClobberMemory();
    ::munmap(m, kBytes + kAlign);
  }
  state.SetItemsProcessed(state.iterations() * (kBytes / 4096));
  state.SetBytesProcessed(state.iterations() * kBytes);
}
BENCHMARK(BM_FirstTouchPage)->ArgName("madv_hugepage")->Arg(0)->Arg(1)->UseRealTime();

// Two threads of this process wake each other in turn through eventfds
// (each wait a blocking read, as a pool's I/O thread waits in epoll_wait
// and a consumer in a futex). Items are wake-ups; the counter is this
// process's CPU (both threads, user + system) per wake-up. With `busy`,
// one spinning process per core competes, as workers running tasks do.
void BM_ThreadWakeup(benchmark::State& state) {
  const bool busy = state.range(0) != 0;
  std::vector<pid_t> spinners;
  if (busy) {
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    for (unsigned i = 0; i < cores; ++i) {
      const pid_t pid = ::fork();
      if (pid == 0) {
        volatile uint64_t x = 0;
        while (true) x = x + 1;
      }
      spinners.push_back(pid);
    }
  }
  const int ping = ::eventfd(0, EFD_CLOEXEC), pong = ::eventfd(0, EFD_CLOEXEC);
  std::thread peer([&] {
    uint64_t v;
    while (::read(ping, &v, sizeof(v)) == sizeof(v) && v != 2) {
      const uint64_t one = 1;
      if (::write(pong, &one, sizeof(one)) != sizeof(one)) break;
    }
  });
  // With `gap_us`, this thread sleeps that long between wake-ups, as the
  // caller of a pool running tasks that long does.
  const int64_t gap_us = state.range(1);
  const double cpu0 = ProcessCpuSeconds();
  for (auto _ : state) {
    if (gap_us > 0) ::usleep(static_cast<useconds_t>(gap_us));
    uint64_t v = 1;
    if (::write(ping, &v, sizeof(v)) != sizeof(v) || ::read(pong, &v, sizeof(v)) != sizeof(v)) {
      state.SkipWithError("eventfd");
      break;
    }
  }
  const double cpu = ProcessCpuSeconds() - cpu0;
  const uint64_t stop = 2;
  if (::write(ping, &stop, sizeof(stop)) != sizeof(stop)) std::abort();
  peer.join();
  ::close(ping);
  ::close(pong);
  for (pid_t pid : spinners) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  // Each iteration wakes the peer and is woken by it (and, with a gap,
  // wakes from its sleep): its CPU is that of two or three wake-ups.
  state.SetItemsProcessed(state.iterations());
  state.counters["cpu_us_per_round"] =
      1e6 * cpu / static_cast<double>(std::max<int64_t>(1, state.iterations()));
}
BENCHMARK(BM_ThreadWakeup)
    ->ArgNames({"cores_busy", "gap_us"})
    ->Args({0, 0})
    ->Args({1, 0})
    ->Args({1, 1000})
    ->Args({1, 10000})
    ->UseRealTime();

}  // namespace
}  // namespace procpool::bench
