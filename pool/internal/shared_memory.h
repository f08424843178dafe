// SharedMemory: an anonymous shared memory file (memfd) and its mapping.
//
// The pool gives each worker one small page through which the worker
// publishes which task it is running, so that when it dies the pool knows
// which task to blame without a round trip per task.
//
// Move-only. The destructor unmaps and closes. Not thread-safe itself; the
// bytes are shared and accessed through atomics.

#ifndef PROCPOOL_POOL_INTERNAL_SHARED_MEMORY_H_
#define PROCPOOL_POOL_INTERNAL_SHARED_MEMORY_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "pool/internal/claim_table.h"
#include "pool/internal/unique_fd.h"

namespace procpool::internal {

class SharedMemory {
 public:
  // Creates a close-on-exec memfd of `size` bytes and maps it.
  static absl::StatusOr<SharedMemory> Create(size_t size);
  // Maps an existing memfd (the worker's side).
  static absl::StatusOr<SharedMemory> Map(UniqueFd fd, size_t size);

  SharedMemory(SharedMemory&& other) noexcept;
  SharedMemory& operator=(SharedMemory&& other) noexcept;
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  ~SharedMemory();

  int fd() const { return fd_.get(); }
  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  SharedMemory(UniqueFd fd, void* data, size_t size)
      : fd_(std::move(fd)), data_(data), size_(size) {}
  void Unmap();

  UniqueFd fd_;
  void* data_ = nullptr;
  size_t size_ = 0;
};

// Why a worker left on its own, in WorkerStatusPage::retire_reason.
enum class RetireReason : uint32_t {
  kNone = 0,
  kMaxTasks = 1,   // ran PoolOptions::max_tasks_per_child tasks
  kMaxMemory = 2,  // resident memory crossed PoolOptions::max_worker_rss_bytes
};

// A hard limit (PoolOptions::limits) a worker crossed (limit_crossed).
enum class LimitKind : uint32_t {
  kNone = 0,
  kMemory = 1,     // an allocation failed under RLIMIT_DATA
  kCpu = 2,        // the task's CPU time reached its limit (SIGXCPU)
  kOpenFiles = 3,  // the task filled RLIMIT_NOFILE (or failed with EMFILE)
};

// The layout of a worker's status page. Written by the worker, read by the
// pool (at any time for statistics and deadlines, and after the worker died
// to learn which task it was running).
struct WorkerStatusPage {
  // Id of the task the worker is running, 0 between tasks.
  std::atomic<uint64_t> running_task;
  // CLOCK_MONOTONIC (steady_clock) time the running call started, in ns;
  // written before running_task (not per item of a chunk).
  std::atomic<uint64_t> running_since_ns;
  // Tasks the worker has finished since it started.
  std::atomic<uint64_t> tasks_done;
  // Total time spent running tasks, and decoding calls / encoding results.
  std::atomic<uint64_t> busy_ns;
  std::atomic<uint64_t> codec_ns;
  // Resident set size after the latest task (only with a memory limit) and
  // peak resident set size after the latest batch.
  std::atomic<uint64_t> rss_bytes;
  std::atomic<uint64_t> peak_rss_bytes;
  // A RetireReason, set before a worker exits of its own accord.
  std::atomic<uint32_t> retire_reason;
  // While running a chunk (running_task is its id): which of the chunk's
  // items, counting from 0.
  std::atomic<uint32_t> running_item;
  // 1 while the worker's result region (payload_region.h) holds a result
  // the pool still needs: set by the worker when it writes one there,
  // cleared by the pool when it no longer reads it.
  std::atomic<uint32_t> result_region_busy;
  // The SandboxLayer bits (sandbox_policy.h) the worker put in force before
  // its hello; 0 without a sandbox.
  std::atomic<uint32_t> sandbox_layers;
  // With PoolOptions::sandbox_on_denied == kStopWorker: the system call the
  // sandbox stopped the worker for, its number plus one (0: none), and its
  // name (written before the number).
  std::atomic<uint32_t> denied_syscall;
  char denied_syscall_name[32];
  // Hard limits (PoolOptions::limits, worker_limits.h): the LimitKind a
  // worker crossed while running `running_task` (0: none), written before
  // it stops itself, after what it observed (bytes of private memory when
  // an allocation failed, CPU ns the task used, descriptors open).
  std::atomic<uint32_t> limit_crossed;
  std::atomic<uint64_t> limit_observed;
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);

inline constexpr size_t kWorkerStatusPageSize = 4096;
// A worker's status memory: the page, then its claim table (claim_table.h).
inline constexpr size_t kWorkerStatusMemoryBytes = kWorkerStatusPageSize + kClaimTableBytes;

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_SHARED_MEMORY_H_
