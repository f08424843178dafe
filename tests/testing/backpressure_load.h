// The backpressure load: producer threads submitting as fast as they can
// into a pool that drains far slower, a fraction of the tasks crashing
// their worker. Shared by //tests/pool:backpressure_load_test (a few
// seconds, asserted) and //bench:backpressure_bench (30 s, reported in
// //bench:compare).
//
// Each producer loops: Submit (which waits for a slot of
// PoolOptions::max_pending), attach a done-callback, drop the future. The
// callback counts the task's resolutions (exactly one is expected), checks
// its outcome (a crash task kAborted, any other its value) and records the
// latency from the call to Submit to the resolution in a fixed histogram.
// Everything is allocated before the run, so the caller's resident memory
// (sampled from /proc/self/statm) measures the pool's own growth.

#ifndef PROCPOOL_TESTS_TESTING_BACKPRESSURE_LOAD_H_
#define PROCPOOL_TESTS_TESTING_BACKPRESSURE_LOAD_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "pool/pool.h"

namespace procpool::testing {

struct LoadOptions {
  int producers = 8;
  absl::Duration duration = absl::Seconds(3);
  // Each task sleeps this long in its worker (faults' sleep_ms).
  int task_ms = 1;
  // One task in `crash_every` segfaults its worker instead (0: none).
  int crash_every = 100;
  // RSS is sampled this often; growth is counted from the first sample
  // after `warmup`.
  absl::Duration sample_every = absl::Milliseconds(20);
  absl::Duration warmup = absl::Milliseconds(500);
  // How long to wait, after the producers stop, for every task to resolve.
  absl::Duration drain_timeout = absl::Seconds(60);
  // Most tasks the run may submit (the exactly-once table's size).
  uint64_t capacity = uint64_t{1} << 22;
  // Shut the pool down (cancel_pending) when the producers stop, instead
  // of letting it drain: for an unbounded pool, whose queue may hold
  // minutes of work.
  bool cancel_at_end = false;
};

struct LoadResult {
  uint64_t submitted = 0;
  uint64_t resolved = 0;       // tasks resolved at least once
  uint64_t resolved_twice = 0; // tasks resolved more than once (must be 0)
  uint64_t crashed = 0;        // crash tasks that failed with kAborted
  uint64_t succeeded = 0;      // other tasks with their value
  uint64_t cancelled = 0;      // kCancelled or kFailedPrecondition (cancel_at_end)
  uint64_t wrong = 0;          // any other outcome
  std::string first_wrong;     // the first such outcome, for the message
  bool drained = false;        // every task resolved within drain_timeout
  double seconds = 0;          // producers' run
  double submit_per_s = 0;     // accepted submissions per second
  // Latency from the call to Submit until the task resolved (done tasks
  // only, not cancelled ones), microseconds.
  double p50_us = 0, p99_us = 0, p999_us = 0, max_us = 0;
  // Time spent inside Submit (waiting for a slot), microseconds.
  double submit_p50_us = 0, submit_p99_us = 0;
  // Caller's RSS: first sample after warm-up, highest sample after it.
  double rss_base_mib = 0, rss_max_mib = 0, rss_growth_mib = 0;
  int rss_samples = 0;

  std::string Summary() const;
};

// Runs the load on `pool` (which has the faults plugin). Blocks for about
// options.duration plus the drain.
LoadResult RunBackpressureLoad(ProcessPool& pool, const LoadOptions& options);

}  // namespace procpool::testing

#endif  // PROCPOOL_TESTS_TESTING_BACKPRESSURE_LOAD_H_
