#include "plugins/math/math.h"

#include <chrono>
#include <numeric>
#include <random>
#include <thread>

namespace procpool::math {

int SlowAdd(int x, int y) {
  thread_local std::mt19937 rng{std::random_device{}()};
  std::uniform_int_distribution<int> ms(10, 50);
  std::this_thread::sleep_for(std::chrono::milliseconds(ms(rng)));
  return x + y;
}

int Add(int x, int y) { return x + y; }

int Noop(int x) { return x; }

std::string Identity(const std::string& s) { return s; }

namespace {

uint64_t Mix(uint64_t rounds) {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (uint64_t i = 0; i < rounds; ++i) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h += i;
  }
  return h;
}

// Rounds of Mix per microsecond on this machine, measured once.
uint64_t RoundsPerMicro() {
  static const uint64_t rounds = [] {
    auto t0 = std::chrono::steady_clock::now();
    volatile uint64_t sink = Mix(2'000'000);
    (void)sink;
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::steady_clock::now() - t0)
                  .count();
    return std::max<uint64_t>(1, 2'000'000 / std::max<int64_t>(1, us));
  }();
  return rounds;
}

}  // namespace

uint64_t Spin(int64_t micros) {
  if (micros <= 0) return 0;
  return Mix(static_cast<uint64_t>(micros) * RoundsPerMicro());
}

int64_t SumPrimesBelow(int64_t n) {
  int64_t sum = 0;
  for (int64_t k = 2; k < n; ++k) {
    bool prime = true;
    for (int64_t d = 2; d * d <= k; ++d) {
      if (k % d == 0) {
        prime = false;
        break;
      }
    }
    if (prime) sum += k;
  }
  return sum;
}

double Sum(const std::vector<double>& values) {
  return std::accumulate(values.begin(), values.end(), 0.0);
}

}  // namespace procpool::math
