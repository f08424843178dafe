// Tasks used only by the benchmarks (libbench_tasks.so), and the pure
// computation they share with the in-process kernel floors.

#ifndef PROCPOOL_BENCH_BENCH_TASKS_H_
#define PROCPOOL_BENCH_BENCH_TASKS_H_

#include <cstdint>
#include <string>

#include "tasks/task.h"

namespace procpool::bench {

// The integer hashing of math::Spin, for a given number of rounds. The
// benchmarks calibrate rounds per microsecond once, in the benchmark
// process, and pass a fixed round count, so every worker and every floor
// process does exactly the same work. (math::Spin calibrates inside each
// worker, and a calibration taken while a core is shared would make a
// "10 us" task mean different amounts of work in different pools.)
inline uint64_t Mix(uint64_t rounds) {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (uint64_t i = 0; i < rounds; ++i) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h += i;
  }
  return h;
}

uint64_t SpinRounds(uint64_t rounds);

// For the crash benchmark. `dir` holds two FIFOs made by the benchmark:
// `pids` (the task writes its worker's pid there, as 4 bytes) and `release`
// (the task then blocks until it reads one byte from it). Returns the pid.
// If `dir` also has a FIFO `alive` that the benchmark reads, the task holds
// its write end open from before it writes its pid until it returns, so the
// benchmark sees EOF there when a killed worker's descriptors are closed:
// the same moment the pool's socket to that worker reads EOF.
int Hold(const std::string& dir);

// This worker's pid.
int Pid(int ignored);

// Builds `mib` MiB of read-only tables in this process (a preload: what a
// plugin's dictionary or model would be); returns 1.
int FillTables(int mib);
// Reads every page of the tables; returns a checksum (0 without tables).
uint64_t ReadTables(int ignored);

inline constexpr TaskRef<uint64_t(uint64_t)> kSpinRounds{"spin_rounds"};
inline constexpr TaskRef<int(int)> kFillTables{"fill_tables"};
inline constexpr TaskRef<uint64_t(int)> kReadTables{"read_tables"};
inline constexpr TaskRef<int(std::string)> kHold{"hold"};
inline constexpr TaskRef<int(int)> kPid{"pid"};

}  // namespace procpool::bench

#endif  // PROCPOOL_BENCH_BENCH_TASKS_H_
