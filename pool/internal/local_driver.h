// LocalDriver: the Backend of a pool whose workers are processes on this
// machine. It carries out what the Scheduler (scheduler.h) decides and
// tells it what happens; it decides nothing itself.
//
// One I/O thread owns the epoll loop: every worker's socket, stderr pipe
// and pidfd (so a worker's death is seen even while a process it forked
// holds its socket), the timers the scheduler asks for, and the spawning of
// every worker (PR_SET_PDEATHSIG is tied to the thread that spawns, and
// this one lives as long as the pool). Callers hand it tasks through an
// intake queue. The scheduler and the workers' connections are guarded by
// the I/O lock `io_mu_`, which the I/O thread holds whenever it is not
// blocked in epoll_wait; `mu_` guards the intake and what other threads
// read (taken after io_mu_, never before).
//
// The serial fast path: a caller that submits a lone task while a worker
// is idle sends it on its own thread, and a caller waiting on such a task
// reads its answer on its own thread, when it can take io_mu_ at once
// (local_driver_fast_path.cc; docs/ARCHITECTURE.md).
//
// The destructor drains, as Shutdown(wait=true): it lets queued and running
// tasks finish, then stops the workers and joins the I/O thread. Terminate()
// first to kill instead.

#ifndef PROCPOOL_POOL_INTERNAL_LOCAL_DRIVER_H_
#define PROCPOOL_POOL_INTERNAL_LOCAL_DRIVER_H_

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
#include "pool/internal/scheduler.h"
#include "pool/internal/task_state.h"
#include "pool/internal/unique_fd.h"
#include "pool/options.h"
#include "pool/stats.h"

namespace procpool::internal {

class WorkerConnection;
class SharedMemory;

class LocalDriver final : public Backend {
 public:
  // Spawns the workers and waits until each has loaded the plugins and said
  // hello (at most options.start_timeout). Errors: kNotFound (plugin or
  // worker executable missing), kInvalidArgument (not a plugin),
  // kFailedPrecondition (ABI mismatch), kAlreadyExists (duplicate task),
  // kDeadlineExceeded (workers too slow to start), kInternal.
  static absl::StatusOr<std::unique_ptr<LocalDriver>> Start(PoolOptions options);

  ~LocalDriver() override;
  LocalDriver(const LocalDriver&) = delete;
  LocalDriver& operator=(const LocalDriver&) = delete;

  const std::vector<TaskInfo>& tasks() const override { return tasks_; }
  absl::StatusOr<uint32_t> FindTask(absl::string_view name, uint64_t fingerprint,
                                    absl::string_view readable) const override;
  // A lone task on an otherwise idle pool is written to an idle worker's
  // socket on the calling thread; others go through the intake.
  void Enqueue(std::shared_ptr<TaskState> task) override ABSL_LOCKS_EXCLUDED(io_mu_, mu_);
  void EnqueueMany(std::vector<std::shared_ptr<TaskState>>& tasks) override
      ABSL_LOCKS_EXCLUDED(mu_);
  size_t NextSubmissionIndex() override { return submissions_.fetch_add(1); }
  bool Shutdown(bool wait, bool cancel_pending, absl::Duration timeout) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void Terminate() override ABSL_LOCKS_EXCLUDED(mu_);
  int num_workers() const override { return options_.max_workers; }
  std::vector<int> WorkerPids() const override ABSL_LOCKS_EXCLUDED(mu_);
  PoolStats Stats() const override ABSL_LOCKS_EXCLUDED(mu_);
  TaskPolicy DefaultPolicy() const override {
    return TaskPolicy{options_.task_timeout, options_.retries};
  }
  size_t SuggestedWindow() const override;
  size_t SuggestedChunkSize() const override;
  size_t max_chunk_bytes() const override;

 private:
  explicit LocalDriver(PoolOptions options);

  // ---- The I/O thread (and a caller holding io_mu_ on the fast path) ----
  void IoLoop() ABSL_LOCKS_EXCLUDED(io_mu_);
  // Carries out the scheduler's actions, and those they lead to.
  void Execute() ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void WriteSends(std::vector<SendAction>& sends) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void Control(const Action& a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void Spawn(WorkerId id, size_t slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Takes the intake and the callers' requests into the scheduler.
  // True if it took a Shutdown or Terminate.
  bool TakeRequests(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Reports what the timed workers run, from their status pages.
  void ObserveWorkers(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Reads the worker's socket (first its stderr, unless the caller knows
  // the pipe is empty) and hands what arrived to the scheduler.
  void OnReadable(WorkerConnection& w, bool read_stderr = true)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void HandleFrame(WorkerConnection& w, uint8_t type, std::string_view payload)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void HandleHello(WorkerConnection& w, std::string_view payload)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void HandleResults(WorkerConnection& w, std::string_view payload)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void ProtocolError(WorkerConnection& w, absl::Status why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void HungUp(WorkerConnection& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Its pidfd fired: reads what it left, reaps it, tells the scheduler,
  // and forgets it.
  void OnExited(WorkerConnection& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void UpdateInterest(WorkerConnection& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // A worker is gone: its totals join its slot's past.
  void SlotGone(const WorkerConnection& w) ABSL_LOCKS_EXCLUDED(mu_);
  void Unwatch(int fd) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  WorkerConnection* Find(WorkerId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Copies the scheduler's state that other threads wait on into mu_.
  void Publish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void Wake();

  // ---- The serial fast path (local_driver_fast_path.cc) ----
  bool DispatchDirect(std::shared_ptr<TaskState>& task) ABSL_LOCKS_EXCLUDED(io_mu_, mu_);
  void AssistWait(const TaskState& t, absl::Time deadline) ABSL_LOCKS_EXCLUDED(io_mu_, mu_);
  WorkerConnection* ClaimForCallerLocked(const TaskState& t)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void RearmLocked(WorkerConnection& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void ReturnToIoThreadLocked(WorkerConnection& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void ArmParkTimerLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  bool CanStayParkedLocked(const WorkerConnection& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void UnparkLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Whether anything waits for the I/O thread (intake, requests, exits).
  bool IoThreadHasWorkLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // The epoll tag of a worker's socket.
  static uint64_t SocketTag(WorkerId id) { return id << 2; }

  // True on the I/O thread, and on a caller while it holds io_mu_ (a
  // done-callback may run then): such a thread never takes the fast path,
  // so it never takes an io_mu_ it already holds.
  static thread_local bool t_io_locked_;
  class IoLockedScope;

  const PoolOptions options_;
  // Bytes of arguments one frame to a worker carries at most.
  const size_t frame_budget_;
  // Set once by the I/O thread (first hello) before Start() returns.
  std::vector<TaskInfo> tasks_;
  absl::flat_hash_map<std::string, uint32_t> task_index_;

  UniqueFd epoll_fd_;
  UniqueFd wake_fd_;     // eventfd
  UniqueFd park_timer_;  // timerfd, see ArmParkTimerLocked
  std::atomic<bool> wake_pending_{false};
  std::atomic<size_t> submissions_{0};
  // Some socket may be parked (written under io_mu_; read without it).
  std::atomic<bool> parked_{false};
  // Something is queued (intake or scheduler): lets a bulk Submit skip the
  // fast path without locking.
  std::atomic<bool> queued_hint_{false};
  // Set by the destructor and Terminate: assists return at their next check.
  std::atomic<bool> assist_off_{false};

  // The I/O lock: held by the I/O thread whenever it is not blocked in
  // epoll_wait, and by a caller on the fast path. Taken before mu_.
  mutable absl::Mutex io_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  // Guarded by io_mu_, but for its counters() and avg_task_ns(), which any
  // thread may read.
  Scheduler sched_;
  Actions actions_ ABSL_GUARDED_BY(io_mu_);
  absl::flat_hash_map<WorkerId, std::unique_ptr<WorkerConnection>> workers_
      ABSL_GUARDED_BY(io_mu_);
  bool park_timer_armed_ ABSL_GUARDED_BY(io_mu_) = false;
  absl::Time next_observe_ ABSL_GUARDED_BY(io_mu_) = absl::InfiniteFuture();
  // Workers whose pidfd fired while a caller held their socket.
  std::vector<WorkerId> exits_deferred_ ABSL_GUARDED_BY(io_mu_);

  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<TaskState>> intake_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> stop_requests_ ABSL_GUARDED_BY(mu_);
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  absl::Status refuse_reason_ ABSL_GUARDED_BY(mu_);
  bool shutdown_requested_ ABSL_GUARDED_BY(mu_) = false;  // not yet taken
  bool cancel_pending_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time shutdown_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool terminate_requested_ ABSL_GUARDED_BY(mu_) = false;  // not yet taken
  bool stop_asked_ ABSL_GUARDED_BY(mu_) = false;  // Shutdown or Terminate, ever
  // Published by the I/O thread.
  Scheduler::StartState start_state_ ABSL_GUARDED_BY(mu_) = Scheduler::StartState::kStarting;
  absl::Status start_error_ ABSL_GUARDED_BY(mu_);
  bool cut_by_deadline_ ABSL_GUARDED_BY(mu_) = false;
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
  void FoldIntoPastLocked(SlotRecord& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::atomic<uint64_t> shm_args_{0};      // PoolStats::shared_memory_args
  std::atomic<uint64_t> shm_results_{0};   // PoolStats::shared_memory_results
  std::atomic<uint64_t> direct_calls_{0};  // PoolStats::direct_calls
  std::atomic<uint64_t> caller_reads_{0};  // PoolStats::caller_reads
  // PoolStats::callback_errors, shared with every task queued here.
  const std::shared_ptr<std::atomic<uint64_t>> callback_errors_ =
      std::make_shared<std::atomic<uint64_t>>(0);
  std::shared_ptr<CancelChannel> cancel_channel_;

  std::thread io_thread_;
};

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_LOCAL_DRIVER_H_
