#include "pool/tuning.h"

#include "absl/synchronization/mutex.h"
#include "pool/internal/malloc_tuning.h"

namespace procpool {

absl::Status TuneProcessForThroughput() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (!internal::RetainLargeBuffers()) {
    return absl::InternalError(
        "glibc refused mallopt(M_MMAP_THRESHOLD, M_TRIM_THRESHOLD or "
        "M_MMAP_MAX); large buffers may still land on fresh pages");
  }
  return absl::OkStatus();
}

}  // namespace procpool
