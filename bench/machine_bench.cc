// What this machine charges for the things a process pool does all the
// time, to read the other benchmarks by: a trivial system call, and the
// first touch of a fresh page of anonymous memory (a page fault), with 4 KiB
// pages and with transparent huge pages asked for by madvise.
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

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

}  // namespace
}  // namespace procpool::bench
