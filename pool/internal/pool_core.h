// PoolCore: the engine behind ProcessPool. Owns the worker processes, the
// queue of pending tasks and the I/O thread that moves tasks to workers and
// results back.
//
// Threading: public methods are thread-safe. One I/O thread owns every
// worker (its process, socket and in-flight queue) and spawns replacements,
// so that workers' PR_SET_PDEATHSIG is tied to a thread that lives as long
// as the pool. Other threads only touch the pending queue and counters,
// under mu_.
//
// The destructor cancels pending tasks, stops workers (SIGTERM, SIGKILL
// after a short grace period), fails tasks that were running with
// kCancelled, reaps every worker and joins the I/O thread. It does not wait
// for running tasks to finish; call Shutdown(/*wait=*/true) first for that.

#ifndef PROCPOOL_POOL_INTERNAL_POOL_CORE_H_
#define PROCPOOL_POOL_INTERNAL_POOL_CORE_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pool/internal/backend.h"
#include "pool/internal/task_state.h"
#include "pool/internal/unique_fd.h"
#include "pool/options.h"
#include "pool/stats.h"

namespace procpool::internal {

class WorkerConnection;  // pool_core.cc
class CallsFrameBuilder;  // wire.h
class SharedMemory;

class PoolCore final : public Backend {
 public:
  // Spawns the workers and waits until each has loaded the plugins and said
  // hello (at most options.start_timeout). Errors: kNotFound (plugin or
  // worker executable missing), kInvalidArgument (not a plugin),
  // kFailedPrecondition (ABI mismatch), kAlreadyExists (duplicate task),
  // kDeadlineExceeded (workers too slow to start), kInternal.
  static absl::StatusOr<std::unique_ptr<PoolCore>> Start(PoolOptions options);

  ~PoolCore() override;
  PoolCore(const PoolCore&) = delete;
  PoolCore& operator=(const PoolCore&) = delete;

  // The tasks of all plugins, in load order; immutable after Start.
  const std::vector<TaskInfo>& tasks() const override { return tasks_; }

  // Index of the task `name` whose fingerprint is `fingerprint`. kNotFound
  // for an unknown name, kInvalidArgument for a signature mismatch (the
  // message shows both signatures).
  absl::StatusOr<uint32_t> FindTask(absl::string_view name, uint64_t fingerprint,
                                    absl::string_view readable) const override;

  // Queues tasks (their args already serialized). After Shutdown, or once
  // the pool is broken, completes them at once with the reason instead.
  // Never blocks on workers.
  void Enqueue(std::shared_ptr<TaskState> task) override ABSL_LOCKS_EXCLUDED(mu_);
  void EnqueueMany(std::vector<std::shared_ptr<TaskState>>& tasks) override
      ABSL_LOCKS_EXCLUDED(mu_);

  // Next value of the pool-wide submission counter.
  size_t NextSubmissionIndex() override { return submissions_.fetch_add(1); }

  // See ProcessPool::Shutdown.
  void Shutdown(bool wait, bool cancel_pending) override ABSL_LOCKS_EXCLUDED(mu_);

  int num_workers() const override { return static_cast<int>(options_.max_workers); }

  // A map chunk stops growing at this many bytes of arguments, so that it
  // travels in one frame with room to spare.
  size_t max_chunk_bytes() const override {
    return std::min<size_t>(size_t{64} << 10, options_.max_frame_bytes / 4);
  }

  // Process ids of the live workers (started, not yet known dead).
  std::vector<int> WorkerPids() const override ABSL_LOCKS_EXCLUDED(mu_);

  // A snapshot of per-worker and pool-wide counters. Never blocks on
  // workers.
  PoolStats Stats() const override ABSL_LOCKS_EXCLUDED(mu_);

  // Pool-wide defaults for a task's policy.
  TaskPolicy DefaultPolicy() const override {
    return TaskPolicy{options_.task_timeout, options_.retries};
  }

  // How far ahead a lazy map should read: enough to keep every worker's
  // batches full at the current batch size, and no more.
  size_t SuggestedWindow() const override;
  // Items per map chunk: about a millisecond of work at the measured
  // average task time; 1 before anything was measured.
  size_t SuggestedChunkSize() const override;

 private:
  explicit PoolCore(PoolOptions options);

  // ---- I/O thread ----
  void IoLoop();
  // Leaves workers_[slot] as it was if the worker cannot be started.
  void SpawnWorker(size_t slot);
  // Counts a failure to start a worker: backs off further respawns, and
  // breaks the pool after several in a row (once started) or fails Start().
  void StartFailed(const absl::Status& s);
  void OnReadable(WorkerConnection& w);
  void ReadStderr(WorkerConnection& w);
  void TakeStderrLine(WorkerConnection& w, std::string line);
  void OnWritable(WorkerConnection& w);
  void HandleFrame(WorkerConnection& w, uint8_t type, std::string_view payload);
  void HandleHello(WorkerConnection& w, std::string_view payload);
  void HandleResults(WorkerConnection& w, std::string_view payload);
  // Tears down a worker that died or misbehaved; `reason` says why when the
  // process itself did not die of its own accord.
  void HandleWorkerLoss(WorkerConnection& w, absl::Status reason);
  // Starts stopping a worker (SIGTERM now, SIGKILL after kill_grace); its
  // death is then handled like any other.
  void StopWorker(WorkerConnection& w);
  // Deadlines, cancellation requests and stop grace periods. Returns the
  // epoll timeout in ms until the next check is due (-1: none).
  int CheckTimers();
  void HandleCancelRequests();
  // Finishes a task and counts the outcome.
  void Finish(TaskState& t, absl::Status status, ResultBytes payload = {});
  void Dispatch();
  // Puts a call whose arguments are large into `w`'s call region, with a
  // reference to them in `frame`. False (nothing written) when the call is
  // small, the region is taken or cannot grow: send the bytes inline.
  bool AddRegionCall(WorkerConnection& w, CallsFrameBuilder& frame, TaskState& t)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The bytes of a result the worker left in its result region (`ref` is
  // the RegionRef it sent). Borrowed, with a lease that frees the region
  // when dropped, or copied (and the region freed now). kDataLoss if the
  // reference is bad.
  absl::StatusOr<ResultBytes> RegionResult(WorkerConnection& w,
                                           std::string_view ref, bool borrow);
  void Flush(WorkerConnection& w);
  void StopWorkers(bool graceful);
  void UpdateInterest(WorkerConnection& w);
  // Fails everything queued and in flight; no new work is accepted.
  void BreakPool(absl::Status why);
  void Wake();

  std::string DescribeTask(const TaskState& t) const;
  // Puts `tasks` back at the front of the queue, in their order, to run
  // next (their workers died or answered only part of a chunk); clears it.
  void RequeueFront(std::vector<std::shared_ptr<TaskState>>& tasks)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const PoolOptions options_;
  // Set once by Start() before any task is queued; read-only afterwards.
  std::vector<TaskInfo> tasks_;
  absl::flat_hash_map<std::string, uint32_t> task_index_;

  UniqueFd epoll_fd_;
  UniqueFd wake_fd_;  // eventfd
  std::atomic<bool> wake_pending_{false};
  std::atomic<size_t> submissions_{0};
  // Average task run time (ns) as reported by workers; written by the I/O
  // thread, read by SuggestedWindow().
  std::atomic<uint64_t> avg_task_ns_{0};

  // Owned by the I/O thread.
  std::vector<std::unique_ptr<WorkerConnection>> workers_;
  size_t rr_next_ = 0;
  int consecutive_start_failures_ = 0;
  absl::Time respawn_not_before_ = absl::InfinitePast();

  mutable absl::Mutex mu_;
  std::deque<std::shared_ptr<TaskState>> pending_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  size_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  absl::Status refuse_reason_ ABSL_GUARDED_BY(mu_);
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  enum class Stop { kNo, kGraceful, kForce };
  Stop stop_ ABSL_GUARDED_BY(mu_) = Stop::kNo;
  // Startup bookkeeping.
  size_t hellos_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status start_error_ ABSL_GUARDED_BY(mu_);
  bool io_done_ ABSL_GUARDED_BY(mu_) = false;
  // Per-slot view of the workers for other threads: the live worker's pid
  // and status page, and what earlier workers in the slot left behind.
  struct SlotRecord {
    int pid = 0;
    std::shared_ptr<SharedMemory> page;
    absl::Time started;
    WorkerStats past;  // totals of the slot's dead workers
  };
  std::vector<SlotRecord> slots_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> cancel_requests_ ABSL_GUARDED_BY(mu_);
  uint64_t submitted_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> succeeded_{0};
  std::atomic<uint64_t> failed_{0};
  std::atomic<uint64_t> shm_args_{0};     // PoolStats::shared_memory_args
  std::atomic<uint64_t> shm_results_{0};  // PoolStats::shared_memory_results
  std::shared_ptr<CancelChannel> cancel_channel_;

  std::thread io_thread_;
};

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_POOL_CORE_H_
