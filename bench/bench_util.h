// Shared pieces of the benchmarks: making a pool with the math and bench
// plugins, and the raw-kernel building blocks of the floors (processes
// talking over a socketpair with nothing in between).

#ifndef PROCPOOL_BENCH_BENCH_UTIL_H_
#define PROCPOOL_BENCH_BENCH_UTIL_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "benchmark/benchmark.h"
#include "pool/pool.h"

namespace procpool::bench {

// PoolOptions with `workers` workers and the math and bench_tasks plugins.
PoolOptions BenchPoolOptions(int workers);

// A pool of `workers` workers, or nullopt after state.SkipWithError.
std::optional<ProcessPool> MakePool(benchmark::State& state, int workers);

// A task handle, or nullopt after state.SkipWithError.
template <class Sig>
std::optional<TaskHandle<Sig>> GetTask(benchmark::State& state,
                                       const ProcessPool& pool, TaskRef<Sig> ref) {
  absl::StatusOr<TaskHandle<Sig>> t = pool.Task(ref);
  if (!t.ok()) {
    state.SkipWithError(t.status().ToString().c_str());
    return std::nullopt;
  }
  return *t;
}

// A runfile of this workspace (e.g. "bench/spawn_helper"); aborts if absent.
std::string Runfile(const std::string& path);

double NowSeconds();  // CLOCK_MONOTONIC

// CPU time (user + system) of this whole process so far, every thread
// included (Google Benchmark's cpu_time counts only the benchmark's own
// thread, and would miss a pool's I/O thread), in seconds.
double ProcessCpuSeconds();

// Whole-buffer I/O on blocking fds; false on EOF or error.
bool WriteAll(int fd, const void* data, size_t n);
bool ReadAll(int fd, void* data, size_t n);

// A child process made with fork(), connected to this one by a socketpair.
// The child runs `body(fd)` and _exits; it must only make system calls and
// plain computation (no locks, no allocation), since it is a fork of a
// process that may have had threads.
struct Peer {
  pid_t pid = -1;
  int fd = -1;
};
Peer ForkPeer(void (*body)(int fd), size_t sockbuf_bytes = 0);
// Closes the parent's end (the child sees EOF) and reaps the child.
void ClosePeer(Peer& peer);

// Child bodies.
void EchoPingBody(int fd);      // reads 4 bytes, writes them back, repeatedly
void EchoFramesBody(int fd);    // reads an 8-byte length + payload, echoes both
void AddRecordsBody(int fd);    // reads (int32 x, int32 y) records, writes x + y
void BlockBody(int fd);         // reads until EOF

// Rounds of Mix per microsecond on this machine: the median of several
// timings in this process. Computed once.
double MixRoundsPerMicro();

}  // namespace procpool::bench

#endif  // PROCPOOL_BENCH_BENCH_UTIL_H_
