#include "pool/internal/malloc_tuning.h"

#include <malloc.h>

#include "pool/internal/sanitizers.h"

namespace procpool::internal {

namespace {

// A sanitizer's allocator replaces glibc's malloc: mallopt() reaches only
// its interceptor, which refuses every setting, and there is no glibc
// behaviour to change.
constexpr bool kSanitizerAllocator = kAddressSanitizer || kThreadSanitizer || kMemorySanitizer;

}  // namespace

bool RetainLargeBuffers() {
  static const bool ok = [] {
    if (kSanitizerAllocator) return true;
    bool mmap_ok = ::mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1;
    bool trim_ok = ::mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
    // Above 32 MiB glibc would still mmap; with no mmapped chunks at all,
    // those come from the heap too (threads' arenas still mmap what does
    // not fit their 64 MiB heaps).
    bool max_ok = ::mallopt(M_MMAP_MAX, 0) == 1;
    return mmap_ok && trim_ok && max_ok;
  }();
  return ok;
}

}  // namespace procpool::internal
