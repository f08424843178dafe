// The math plugin's tasks, as plain functions (testable in-process) and as
// typed references for callers of a pool.

#ifndef PROCPOOL_PLUGINS_MATH_MATH_H_
#define PROCPOOL_PLUGINS_MATH_MATH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "tasks/task.h"

namespace procpool::math {

// The seed article's task: x + y after a simulated heavy load, a random
// sleep of 10 to 50 ms (the article sleeps 1 to 5 s).
int SlowAdd(int x, int y);

// x + y, at once.
int Add(int x, int y);

// Returns its argument; for round-trip and bandwidth measurements.
int Noop(int x);
std::string Identity(const std::string& s);

// CPU-bound work of about `micros` microseconds (a fixed amount of integer
// hashing calibrated once per process), returning a checksum so it cannot
// be optimised away.
uint64_t Spin(int64_t micros);

// Sum of the primes below n, by trial division: honest CPU work.
int64_t SumPrimesBelow(int64_t n);

// Sum of a vector; shows containers crossing the boundary.
double Sum(const std::vector<double>& values);

inline constexpr TaskRef<int(int, int)> kSlowAdd{"slow_add"};
inline constexpr TaskRef<int(int, int)> kAdd{"add"};
inline constexpr TaskRef<int(int)> kNoop{"noop"};
inline constexpr TaskRef<std::string(std::string)> kIdentity{"identity"};
inline constexpr TaskRef<uint64_t(int64_t)> kSpin{"spin"};
inline constexpr TaskRef<int64_t(int64_t)> kSumPrimesBelow{"sum_primes_below"};
inline constexpr TaskRef<double(std::vector<double>)> kSum{"sum"};

}  // namespace procpool::math

#endif  // PROCPOOL_PLUGINS_MATH_MATH_H_
