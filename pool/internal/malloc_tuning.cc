#include "pool/internal/malloc_tuning.h"

#include <malloc.h>

namespace procpool::internal {

bool RetainLargeBuffers() {
  static const bool ok = [] {
    bool mmap_ok = ::mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1;
    bool trim_ok = ::mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
    return mmap_ok && trim_ok;
  }();
  return ok;
}

}  // namespace procpool::internal
