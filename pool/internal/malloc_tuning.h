// Keeps glibc's malloc from handing large buffers back to the kernel.
//
// By default glibc serves allocations over 128 KiB (raised dynamically up
// to 32 MiB) with fresh mmap()s and trims freed memory at the top of its
// heaps, so every large payload lands on fresh pages. On the paravirtualised
// machines procpool is measured on a first touch costs ~19 us per 4 KiB
// page, which made a 1 MiB identity call ~50x slower than its copies.
// RetainLargeBuffers() sets M_MMAP_THRESHOLD to its maximum (32 MiB),
// M_MMAP_MAX to 0 (so larger buffers do not get their own mapping either)
// and M_TRIM_THRESHOLD to 1 GiB: buffers of the main thread's arena come
// from the heap whatever their size, and freed memory is kept for the next
// one. The cost is that a process keeps
// its high-water mark of freed heap memory resident.

#ifndef PROCPOOL_POOL_INTERNAL_MALLOC_TUNING_H_
#define PROCPOOL_POOL_INTERNAL_MALLOC_TUNING_H_

namespace procpool::internal {

// Process-wide; idempotent; thread-safe. Returns false if glibc refused.
// Under a sanitizer (whose allocator replaces glibc's) there is nothing to
// set: returns true and changes nothing.
bool RetainLargeBuffers();

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_MALLOC_TUNING_H_
