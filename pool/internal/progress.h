// ProgressReporter: draws a progress bar for a map on a terminal and feeds
// progress callbacks.
//
// Not thread-safe: used by the thread consuming a map. The counters it
// reads are atomics updated from the pool's I/O thread.

#ifndef PROCPOOL_POOL_INTERNAL_PROGRESS_H_
#define PROCPOOL_POOL_INTERNAL_PROGRESS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "pool/stats.h"

namespace procpool::internal {

// Completion counts shared with done-callbacks.
struct ProgressCounters {
  std::atomic<uint64_t> done{0};
  std::atomic<uint64_t> failed{0};
};

class ProgressReporter {
 public:
  // Draws on `fd` only if `draw` and `fd` is a terminal. `total` is 0 when
  // unknown. `callback` may be empty.
  ProgressReporter(uint64_t total, bool draw, int fd,
                   std::function<void(const Progress&)> callback,
                   absl::Duration interval = absl::Milliseconds(100));
  // Draws the final state and ends the line.
  ~ProgressReporter();

  ProgressCounters& counters() { return *counters_; }
  std::shared_ptr<ProgressCounters> shared_counters() { return counters_; }

  // Items the consumer has already seen, done and failed: a floor for the
  // counters, which done-callbacks may not have bumped yet.
  void Consumed(bool failed) {
    ++consumed_;
    if (failed) ++consumed_failed_;
  }

  // Redraws / calls back if `interval` has passed since the last time.
  void Tick();
  // Redraws / calls back now.
  void Report();

  bool drawing() const { return draw_; }

  // The bar's text for `p` at `width` columns (for tests).
  static std::string Render(const Progress& p, int width);

 private:
  Progress Snapshot() const;

  const uint64_t total_;
  const bool draw_;
  const int fd_;
  const std::function<void(const Progress&)> callback_;
  const absl::Duration interval_;
  const absl::Time start_;
  absl::Time last_;
  bool drew_ = false;
  uint64_t consumed_ = 0;
  uint64_t consumed_failed_ = 0;
  std::shared_ptr<ProgressCounters> counters_ =
      std::make_shared<ProgressCounters>();
};

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_PROGRESS_H_
