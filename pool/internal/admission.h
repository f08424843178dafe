// Admission: the bound of PoolOptions::max_pending, the pool's backpressure.
//
// A counter of units (one per submitted task, one per item of a map's
// chunk) that callers take before they queue work and give back when that
// work's future resolves, whatever the outcome. Taking waits while the
// bound is reached, up to a deadline. Close() lifts the bound for good and
// wakes every waiter: the pool calls it when it stops accepting work
// (Shutdown, Terminate, a broken pool), and then refuses what the woken
// callers queue with its own reason, so nobody waits for a slot that a
// stopped pool would never free.
//
// No I/O, no clock but the deadline a caller passes. Thread-safe.

#ifndef PROCPOOL_POOL_INTERNAL_ADMISSION_H_
#define PROCPOOL_POOL_INTERNAL_ADMISSION_H_

#include <cstddef>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace procpool::internal {

class Admission {
 public:
  // `limit` units at most in use (>= 1).
  explicit Admission(size_t limit) : limit_(limit < 1 ? 1 : limit) {}
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  size_t limit() const { return limit_; }

  // Takes between 1 and `max_units` units (as many as are free, at most
  // `max_units`), waiting until at least one is free or `deadline` passes
  // (absl::InfinitePast(): do not wait; absl::InfiniteFuture(): no
  // deadline). Returns how many it took; 0 when the deadline passed first.
  // Once closed, takes `max_units` at once, over the bound. The caller
  // gives every unit back with Release.
  size_t Acquire(size_t max_units, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  // Acquire without waiting.
  size_t TryAcquire(size_t max_units) ABSL_LOCKS_EXCLUDED(mu_) {
    return Acquire(max_units, absl::InfinitePast());
  }
  // Gives back `units` taken by Acquire; wakes waiters. Never blocks for
  // long.
  void Release(size_t units) ABSL_LOCKS_EXCLUDED(mu_);
  // Lifts the bound and wakes every waiter. Idempotent.
  void Close() ABSL_LOCKS_EXCLUDED(mu_);

  size_t in_use() const ABSL_LOCKS_EXCLUDED(mu_);
  // How many callers wait in Acquire now (for tests).
  size_t waiting() const ABSL_LOCKS_EXCLUDED(mu_);
  bool closed() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const size_t limit_;
  mutable absl::Mutex mu_;
  size_t in_use_ ABSL_GUARDED_BY(mu_) = 0;
  size_t waiting_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_ADMISSION_H_
