// Which sanitizer the including file is built with, as constants, for the
// few places whose behaviour must differ under one (a sanitizer's allocator
// has no glibc malloc settings, its shadow memory counts against memory
// limits, its runtime makes system calls a seccomp filter must allow).
// GCC says so with __SANITIZE_*__, clang with __has_feature.

#ifndef PROCPOOL_POOL_INTERNAL_SANITIZERS_H_
#define PROCPOOL_POOL_INTERNAL_SANITIZERS_H_

#ifndef __has_feature
#define PROCPOOL_HAS_FEATURE(x) 0
#else
#define PROCPOOL_HAS_FEATURE(x) __has_feature(x)
#endif

namespace procpool::internal {

#if defined(__SANITIZE_ADDRESS__) || PROCPOOL_HAS_FEATURE(address_sanitizer)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif

#if defined(__SANITIZE_THREAD__) || PROCPOOL_HAS_FEATURE(thread_sanitizer)
inline constexpr bool kThreadSanitizer = true;
#else
inline constexpr bool kThreadSanitizer = false;
#endif

#if PROCPOOL_HAS_FEATURE(memory_sanitizer)
inline constexpr bool kMemorySanitizer = true;
#else
inline constexpr bool kMemorySanitizer = false;
#endif

}  // namespace procpool::internal

#undef PROCPOOL_HAS_FEATURE

#endif  // PROCPOOL_POOL_INTERNAL_SANITIZERS_H_
