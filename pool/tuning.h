// TuneProcessForThroughput(): the process-wide settings that make a pool's
// calling process faster, as one explicit call the program makes.
//
// A library must not change its host process behind its back, so neither
// ProcessPool::Create() nor anything else in procpool makes these changes
// in the calling process. Worker processes always run with them (they are
// the pool's own processes); a program that wants them too says so:
//
//   int main(int argc, char** argv) {
//     if (absl::Status s = procpool::TuneProcessForThroughput(); !s.ok()) {
//       ...  // glibc refused a malloc setting; the program still works
//     }
//     ...   // start threads, create pools
//   }
//
// Thread safety: call it once, at start-up, before other threads run (see
// the DANGER paragraph below).

#ifndef PROCPOOL_POOL_TUNING_H_
#define PROCPOOL_POOL_TUNING_H_

#include "absl/status/status.h"

namespace procpool {

// Changes two process-wide settings:
//
// - glibc's malloc: M_MMAP_THRESHOLD to 32 MiB, M_MMAP_MAX to 0 and
//   M_TRIM_THRESHOLD to 1 GiB (mallopt). Buffers of any size then come
//   from the heap, and freed ones stay there to be reused. By default glibc
//   gives each allocation over 128 KiB (raised dynamically up to 32 MiB)
//   a mapping of its own and hands freed heap back, so every large argument
//   or result lands on fresh pages, and a first touch costs up to ~19 us
//   per 4 KiB page on a virtual machine (a 1 MiB round trip becomes ~50x
//   slower than its copies). The cost: the process keeps its peak of freed
//   heap memory resident for the rest of its life.
// - Abseil's Mutex deadlock detection: turned off
//   (absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore)).
//   In builds of Abseil without NDEBUG (Debian's is one) it takes a global
//   lock on every Mutex operation, which makes a map of small tasks about
//   2x slower. The cost: potential deadlocks anywhere in the program are no
//   longer reported.
//
// DANGER: both settings are process-wide, affect every library in the
// process, and cannot be undone. Call this once, at start-up, before other
// threads run: mallopt() must not race with other threads' allocations,
// and a Mutex used before and after the switch would be checked only part
// of the time.
//
// Returns OK, or kInternal naming a malloc setting glibc refused (Abseil's
// switch is made in any case). In a sanitizer build (ASan, TSan, MSan) the
// sanitizer's allocator replaces glibc's and the malloc settings do not
// apply: nothing is set there, and the result is OK. Idempotent. Never blocks.
absl::Status TuneProcessForThroughput();

}  // namespace procpool

#endif  // PROCPOOL_POOL_TUNING_H_
