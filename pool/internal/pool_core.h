// PoolCore: the engine behind ProcessPool. Owns the worker processes, the
// queue of pending tasks and the I/O thread that moves tasks to workers and
// results back.
//
// Threading: public methods are thread-safe. One I/O thread spawns every
// worker and replacement, so that workers' PR_SET_PDEATHSIG is tied to a
// thread that lives as long as the pool. The workers' state (process,
// socket, in-flight queue) is guarded by io_mu_, which the I/O thread holds
// whenever it is not blocked in epoll_wait; the pending queue and counters
// by mu_ (taken after io_mu_, never before). A caller thread takes io_mu_
// only for the serial fast path: sending a lone task to an idle worker
// itself (Enqueue) and reading the answer itself while it waits
// (AssistWait). See docs/ARCHITECTURE.md, "Threading rules".
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
  // A lone task on an otherwise idle pool is written to an idle worker's
  // socket on the calling thread (no wake-up of the I/O thread).
  void Enqueue(std::shared_ptr<TaskState> task) override
      ABSL_LOCKS_EXCLUDED(io_mu_, mu_);
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

  // ---- I/O thread (and, for the fast path, a caller holding io_mu_) ----
  void IoLoop() ABSL_LOCKS_EXCLUDED(io_mu_);
  // Leaves workers_[slot] as it was if the worker cannot be started. I/O
  // thread only (PR_SET_PDEATHSIG).
  void SpawnWorker(size_t slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Counts a failure to start a worker: backs off further respawns, and
  // breaks the pool after several in a row (once started) or fails Start().
  void StartFailed(const absl::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Reads and handles what the worker sent; first forwards its stderr
  // unless the caller knows the pipe is empty.
  void OnReadable(WorkerConnection& w, bool read_stderr = true)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void ReadStderr(WorkerConnection& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void TakeStderrLine(WorkerConnection& w, std::string line)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void OnWritable(WorkerConnection& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void HandleFrame(WorkerConnection& w, uint8_t type, std::string_view payload)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void HandleHello(WorkerConnection& w, std::string_view payload)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void HandleResults(WorkerConnection& w, std::string_view payload)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Tears down a worker that died or misbehaved; `reason` says why when the
  // process itself did not die of its own accord.
  void HandleWorkerLoss(WorkerConnection& w, absl::Status reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Starts stopping a worker (SIGTERM now, SIGKILL after kill_grace); its
  // death is then handled like any other.
  void StopWorker(WorkerConnection& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Deadlines, cancellation requests and stop grace periods. Returns the
  // epoll timeout in ms until the next check is due (-1: none).
  int CheckTimers() ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void HandleCancelRequests() ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Finishes a task and counts the outcome. Tasks in a worker's in-flight
  // queue are finished only under io_mu_.
  void Finish(TaskState& t, absl::Status status, ResultBytes payload = {});
  void Dispatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Puts a call whose arguments are large into `w`'s call region, with a
  // reference to them in `frame`. False (nothing written) when the call is
  // small, the region is taken or cannot grow: send the bytes inline.
  bool AddRegionCall(WorkerConnection& w, CallsFrameBuilder& frame, TaskState& t)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // The bytes of a result the worker left in shared memory (`ref` is the
  // RegionRef it sent): in its result region, or over its call's arguments
  // in the call region (`in_call_region`, kRegionResultInCall). Borrowed,
  // with a lease that frees that region when dropped, or copied (and the
  // region freed now). kDataLoss if the reference is bad.
  absl::StatusOr<ResultBytes> RegionResult(WorkerConnection& w, std::string_view ref,
                                           bool in_call_region, bool borrow)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void Flush(WorkerConnection& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void StopWorkers(bool graceful) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void UpdateInterest(WorkerConnection& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Fails everything queued and in flight; no new work is accepted.
  void BreakPool(absl::Status why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void Wake();

  // ---- The serial fast path (callers' threads) ----
  // Sends `task` to an idle worker on this thread when nothing is pending,
  // no other task is on that worker and io_mu_ is free at once. False (and
  // `task` untouched) when it did not; the caller then queues it.
  bool DispatchDirect(std::shared_ptr<TaskState>& task)
      ABSL_LOCKS_EXCLUDED(io_mu_, mu_);
  bool DispatchDirectLocked(std::shared_ptr<TaskState>& task)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_) ABSL_LOCKS_EXCLUDED(mu_);
  // CancelChannel's wait sink: while `t` (a single task, never a map's
  // chunk) is the only task on its worker and nothing is pending, polls that worker's socket on this thread (1 ms at
  // a time, for at most kAssistFor or until `deadline`) and handles what
  // arrives with OnReadable, as the I/O thread would. Returns when `t` is
  // done, at `deadline`, or when it stops helping (the caller then waits
  // as usual). Never blocks on a worker for longer than that.
  void AssistWait(const TaskState& t, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(io_mu_, mu_);
  // Takes `t`'s worker out of the I/O thread's epoll set for this caller,
  // or nullptr when the fast path does not apply.
  WorkerConnection* ClaimForCallerLocked(const TaskState& t)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_) ABSL_LOCKS_EXCLUDED(mu_);
  // Puts a claimed worker's socket back in the I/O thread's epoll set.
  void RearmLocked(WorkerConnection& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Gives a claimed worker's socket back to the I/O thread (and wakes it if
  // it has something to do: a dead or stopping worker, queued work, a stop).
  void ReturnToIoThreadLocked(WorkerConnection& w)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_) ABSL_LOCKS_EXCLUDED(mu_);
  // Parked sockets (see DispatchDirect) go back to the I/O thread at its
  // next wake-up; the park timer makes sure there is one.
  void ArmParkTimerLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // An idle worker whose socket may stay parked after an assist.
  bool CanStayParkedLocked(const WorkerConnection& w)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_) ABSL_LOCKS_EXCLUDED(mu_);
  void UnparkLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Waits until no caller is polling a claimed socket, so that sockets may
  // be closed (their claims end at the next check: w.dead).
  void AwaitNoPollersLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);

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
  UniqueFd park_timer_;  // timerfd, see ArmParkTimerLocked
  std::atomic<bool> wake_pending_{false};
  std::atomic<size_t> submissions_{0};
  // Average task run time (ns) as reported by workers; written by the I/O
  // thread, read by SuggestedWindow().
  std::atomic<uint64_t> avg_task_ns_{0};

  // The I/O lock: held by the I/O thread whenever it is not blocked in
  // epoll_wait, and by a caller on the fast path. Guards the workers and
  // everything in each WorkerConnection. Taken before mu_.
  mutable absl::Mutex io_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::vector<std::unique_ptr<WorkerConnection>> workers_ ABSL_GUARDED_BY(io_mu_);
  size_t rr_next_ ABSL_GUARDED_BY(io_mu_) = 0;
  int consecutive_start_failures_ ABSL_GUARDED_BY(io_mu_) = 0;
  absl::Time respawn_not_before_ ABSL_GUARDED_BY(io_mu_) = absl::InfinitePast();
  bool park_timer_armed_ ABSL_GUARDED_BY(io_mu_) = false;
  // Some socket may be parked (written under io_mu_; read without it to
  // decide whether a watched task needs a Wake()).
  std::atomic<bool> parked_{false};
  // !pending_.empty(), as last seen under mu_ (set on every push, recomputed
  // by Dispatch): lets a bulk Submit skip the fast path without locking.
  std::atomic<bool> queued_hint_{false};
  // Callers polling a claimed socket without io_mu_ right now.
  int pollers_ ABSL_GUARDED_BY(io_mu_) = 0;
  // Set (for good) before the sockets are closed by BreakPool or
  // StopWorkers: no new claims, and claims are given back.
  bool sockets_closing_ ABSL_GUARDED_BY(io_mu_) = false;
  // Set by the destructor: assists return at their next check.
  std::atomic<bool> assist_off_{false};

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
  std::atomic<uint64_t> direct_calls_{0};  // PoolStats::direct_calls
  std::atomic<uint64_t> caller_reads_{0};  // PoolStats::caller_reads
  // PoolStats::callback_errors, shared with every task queued here.
  const std::shared_ptr<std::atomic<uint64_t>> callback_errors_ =
      std::make_shared<std::atomic<uint64_t>>(0);
  std::shared_ptr<CancelChannel> cancel_channel_;

  std::thread io_thread_;
};

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_POOL_CORE_H_
