// main() of the Google Benchmark binaries in bench/: the process opts into
// the pool's throughput settings (pool/tuning.h) before anything else runs,
// so that the numbers measure the pool as a tuned program runs it.

#include <cstdio>

#include "benchmark/benchmark.h"
#include "pool/tuning.h"

int main(int argc, char** argv) {
  if (absl::Status s = procpool::TuneProcessForThroughput(); !s.ok()) {
    std::fprintf(stderr, "bench: %s\n", s.ToString().c_str());
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
