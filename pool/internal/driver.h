// Driver: what the two Backends built on the Scheduler share. A driver
// carries out what the scheduler decides and tells it what happens; the
// subclasses (LocalDriver: worker processes over sockets; MpiDriver: node
// agents over MPI) own an I/O thread and translate between their world and
// the scheduler's events and actions. This class is the rest, which does
// not depend on the world:
//   - the callers' side: tasks go into an intake queue; requests to stop a
//     task, shut down or terminate are recorded; the I/O thread takes them
//     all into the scheduler at its next turn (TakeRequests);
//   - what other threads wait on (start-up, the end) is published from the
//     scheduler under mu_ (Publish);
//   - carrying out the scheduler's actions in their order (Execute): sends
//     and control actions through the subclass, completions here.
//
// Locks: io_mu_ guards the scheduler and everything the I/O thread owns;
// the subclass's I/O thread holds it while it works. mu_ guards the intake,
// the requests and what is published; it is taken after io_mu_, never
// before. Public methods are thread-safe.

#ifndef PROCPOOL_POOL_INTERNAL_DRIVER_H_
#define PROCPOOL_POOL_INTERNAL_DRIVER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pool/internal/admission.h"
#include "pool/internal/backend.h"
#include "pool/internal/scheduler.h"
#include "pool/internal/task_state.h"
#include "pool/options.h"
#include "pool/stats.h"

namespace procpool::internal {

class Driver : public Backend {
 public:
  ~Driver() override;
  Driver(const Driver&) = delete;
  Driver& operator=(const Driver&) = delete;

  const std::vector<TaskInfo>& tasks() const override { return tasks_; }
  absl::StatusOr<uint32_t> FindTask(absl::string_view name, uint64_t fingerprint,
                                    absl::string_view readable) const override;
  // Queues tasks for the I/O thread; after Shutdown or Terminate (or once
  // the pool broke) resolves them with the reason instead. Never blocks on
  // workers.
  void EnqueueMany(std::vector<std::shared_ptr<TaskState>>& tasks) override
      ABSL_LOCKS_EXCLUDED(mu_);
  size_t NextSubmissionIndex() override { return submissions_.fetch_add(1); }
  bool Shutdown(bool wait, bool cancel_pending, absl::Duration timeout) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void Terminate() override ABSL_LOCKS_EXCLUDED(mu_);
  TaskPolicy DefaultPolicy() const override {
    return TaskPolicy{options_.task_timeout, options_.retries};
  }
  size_t SuggestedWindow(size_t chunksize) const override;
  size_t SuggestedChunkSize() const override;
  size_t max_chunk_bytes() const override;
  std::shared_ptr<Admission> admission() const override { return admission_; }
  bool MustNotWait() const override;
  // The average run time of a call (a chunk: of an item) as the workers
  // report it; 0 until one answered. Thread-safe.
  uint64_t avg_task_ns() const { return sched_.avg_task_ns(); }

 protected:
  Driver(PoolOptions options, SchedulerConfig config);

  // ---- The subclass's part ----
  // Wakes the I/O thread (thread-safe; called with mu_ not held).
  virtual void Wake() = 0;
  // Carry out sends and control actions (io_mu_ held).
  virtual void WriteSends(std::vector<SendAction>& sends) = 0;
  virtual void Control(const Action& action) = 0;

  // ---- For the subclass's I/O thread ----
  // Carries out the scheduler's actions, and those they lead to.
  void Execute() ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Takes the intake and the callers' requests into the scheduler. True if
  // it took a Shutdown or Terminate.
  bool TakeRequests(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Copies what other threads wait on from the scheduler into mu_.
  void Publish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // The I/O thread is about to return: every waiter may go.
  void IoThreadDone() ABSL_LOCKS_EXCLUDED(mu_);
  // The first worker's (or agent's) manifest: the task table. Set before
  // start-up completes, so callers read it without a lock.
  void SetTasks(std::vector<TaskInfo> tasks) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  bool has_tasks() const { return !task_index_.empty() || !tasks_.empty(); }

  // ---- For the subclass's Start() and destructor ----
  // Blocks until start-up succeeded or failed (the scheduler keeps
  // start_timeout). On failure, terminates and returns why.
  absl::Status AwaitStarted() ABSL_LOCKS_EXCLUDED(mu_);
  // Drains (as Shutdown(wait=true)) unless terminated; the subclass then
  // joins its thread.
  void DrainForDestruction() ABSL_LOCKS_EXCLUDED(mu_);
  // A CancelChannel whose stop requests reach the scheduler; `wait_sink`
  // and `watch_sink` as CancelChannel's (null: none).
  void MakeCancelChannel(CancelChannel::WaitSink wait_sink, CancelChannel::WatchSink watch_sink);
  // Attaches the pool to a task the caller hands over.
  void Adopt(TaskState& t) const;
  // Requests are waiting (for the fast path, which leaves them to the I/O
  // thread).
  bool RequestsPendingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The counters behind PoolStats that the scheduler and this class keep.
  void AddCounters(PoolStats& stats) const;
  // How many processes run tasks (for the maps' read-ahead).
  virtual size_t Processes() const = 0;

  const PoolOptions options_;
  // PoolOptions::max_pending's bound (null: none). Callers take slots
  // before they queue (pool.cc, map_range.h); a task's done-callback gives
  // its slot back. Closed when the pool stops accepting work.
  const std::shared_ptr<Admission> admission_;

  // The I/O lock: held by the I/O thread whenever it works, and by a
  // caller on the local driver's fast path. Taken before mu_.
  mutable absl::Mutex io_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  // Guarded by io_mu_, but for its counters() and avg_task_ns(), which any
  // thread may read.
  Scheduler sched_;
  Actions actions_ ABSL_GUARDED_BY(io_mu_);
  // Something is queued (intake or scheduler): lets a bulk Submit skip the
  // fast path without locking.
  std::atomic<bool> queued_hint_{false};
  // Whether a task put in the intake must wake the I/O thread. Not while
  // every worker has its window of calls full: an answer comes before any
  // worker can use another call, and the I/O thread takes the intake then
  // (one wake-up per task saved, which on a virtual machine is several
  // microseconds of the caller's CPU). Set by Execute.
  std::atomic<bool> intake_wakes_{true};

  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<TaskState>> intake_ ABSL_GUARDED_BY(mu_);
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  absl::Status refuse_reason_ ABSL_GUARDED_BY(mu_);
  bool io_done_ ABSL_GUARDED_BY(mu_) = false;

 private:
  // Set once by the I/O thread (SetTasks) before Start() returns.
  std::vector<TaskInfo> tasks_;
  absl::flat_hash_map<std::string, uint32_t> task_index_;
  std::atomic<size_t> submissions_{0};
  // PoolStats::callback_errors, shared with every task queued here.
  const std::shared_ptr<std::atomic<uint64_t>> callback_errors_ =
      std::make_shared<std::atomic<uint64_t>>(0);
  std::shared_ptr<CancelChannel> cancel_channel_;

  std::vector<uint64_t> stop_requests_ ABSL_GUARDED_BY(mu_);
  bool shutdown_requested_ ABSL_GUARDED_BY(mu_) = false;  // not yet taken
  bool cancel_pending_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time shutdown_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool terminate_requested_ ABSL_GUARDED_BY(mu_) = false;  // not yet taken
  bool terminated_ ABSL_GUARDED_BY(mu_) = false;
  Scheduler::StartState start_state_ ABSL_GUARDED_BY(mu_) =
      Scheduler::StartState::kStarting;
  absl::Status start_error_ ABSL_GUARDED_BY(mu_);
  bool cut_by_deadline_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_DRIVER_H_
