// LocalDriver: the Backend of a pool whose workers are processes on this
// machine. It carries out what the Scheduler (scheduler.h) decides and
// tells it what happens; it decides nothing itself. What it shares with
// the MPI driver (the intake, requests, start and end) is in Driver.
//
// One I/O thread owns the epoll loop: every worker's socket, stderr pipe
// and pidfd (so a worker's death is seen even while a process it forked
// holds its socket), the timers the scheduler asks for, and the spawning of
// every worker (PR_SET_PDEATHSIG is tied to the thread that spawns, and
// this one lives as long as the pool). Callers hand it tasks through an
// intake queue (Driver). The scheduler and the workers' connections are
// guarded by the I/O lock `io_mu_`, which the I/O thread holds whenever it
// is not blocked in epoll_wait.
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
#include "pool/internal/driver.h"
#include "pool/internal/scheduler.h"
#include "pool/internal/task_state.h"
#include "pool/internal/unique_fd.h"
#include "pool/internal/worker_launcher.h"
#include "pool/options.h"
#include "pool/stats.h"

namespace procpool::internal {

class WorkerConnection;
class SharedMemory;
class PoolLimits;
class MemoryCgroup;

class LocalDriver final : public Driver {
 public:
  // Spawns the workers and waits until each has loaded the plugins and said
  // hello (at most options.start_timeout). Errors: kNotFound (plugin or
  // worker executable missing), kInvalidArgument (not a plugin),
  // kFailedPrecondition (ABI mismatch), kAlreadyExists (duplicate task),
  // kDeadlineExceeded (workers too slow to start), kInternal.
  static absl::StatusOr<std::unique_ptr<LocalDriver>> Start(PoolOptions options);

  ~LocalDriver() override;

  // A lone task on an otherwise idle pool is written to an idle worker's
  // socket on the calling thread; others go through the intake.
  void Enqueue(std::shared_ptr<TaskState> task) override ABSL_LOCKS_EXCLUDED(io_mu_, mu_);
  void Terminate() override;
  int num_workers() const override { return options_.max_workers; }
  std::vector<int> WorkerPids() const override ABSL_LOCKS_EXCLUDED(slots_mu_);
  PoolStats Stats() const override ABSL_LOCKS_EXCLUDED(slots_mu_);

 private:
  explicit LocalDriver(PoolOptions options);

  // Driver
  void Wake() override;
  void WriteSends(std::vector<SendAction>& sends) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void Control(const Action& a) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  size_t Processes() const override { return static_cast<size_t>(options_.max_workers); }

  // ---- The I/O thread (and a caller holding io_mu_ on the fast path) ----
  void IoLoop() ABSL_LOCKS_EXCLUDED(io_mu_);
  void Spawn(WorkerId id, size_t slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Starts the workers the scheduler asked for (I/O thread only), and
  // carries out what that leads to.
  void SpawnPending() ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // The scheduler stopped or closed a worker it asked for before it was
  // spawned: it never will be, and its end is reported as an exit.
  bool DropPendingSpawn(WorkerId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Starts a worker process for `id` and `slot` (a spare: forked from the
  // template only) and watches it; with hard limits, files it in its
  // memory cgroup. Nothing is told to the scheduler.
  absl::StatusOr<std::unique_ptr<WorkerConnection>> StartConnection(WorkerId id, size_t slot,
                                                                    bool spare)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Takes a worker's socket (unless a caller holds it or it hung up),
  // stderr pipe and pidfd out of the epoll set.
  void UnwatchWorker(const WorkerConnection& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Adds (op EPOLL_CTL_ADD) or re-tags (EPOLL_CTL_MOD) a worker's socket,
  // stderr pipe and pidfd in the epoll set under its id.
  absl::Status WatchWorker(const WorkerConnection& w, int op)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // The worker is slot `w.slot`'s now, for WorkerPids() and Stats().
  void RecordInSlot(const WorkerConnection& w) ABSL_LOCKS_EXCLUDED(slots_mu_);
  // ---- The spare (StartMethod::kZygote) ----
  // One worker forked from the template ahead of need, which says hello
  // and waits without a slot. A slot that needs a worker adopts it (its
  // id and slot change, and the scheduler learns of it then), so a
  // replacement after a crash does not wait for a fork and a hello; a new
  // spare is forked at the end of that turn. The first once the pool has
  // started (so that it does not hold up the start); none while it stops,
  // nor after kMaxSpareDeaths spares in a row died unadopted.
  void MaybeMakeSpare() ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  bool AdoptSpare(WorkerId id, size_t slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void DropSpare() ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Destroys the spare (killed and reaped if it lives) and its cgroup.
  void ForgetSpare() ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  static constexpr WorkerId kSpareIdBase = WorkerId{1} << 60;
  static constexpr int kMaxSpareDeaths = 3;
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
  // Its socket closed (EOF, a failed write) or it broke the protocol.
  void HungUp(WorkerConnection& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Its pidfd fired: reads what it left, reaps it, tells the scheduler,
  // and forgets it.
  void OnExited(WorkerConnection& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void UpdateInterest(WorkerConnection& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // A worker is gone: its totals join its slot's past.
  void SlotGone(const WorkerConnection& w) ABSL_LOCKS_EXCLUDED(slots_mu_);
  void Unwatch(int fd) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  WorkerConnection* Find(WorkerId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);

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

  // Bytes of arguments one frame to a worker carries at most.
  const size_t frame_budget_;

  UniqueFd epoll_fd_;
  UniqueFd wake_fd_;     // eventfd
  UniqueFd park_timer_;  // timerfd, see ArmParkTimerLocked
  std::atomic<bool> wake_pending_{false};
  // Some socket may be parked (written under io_mu_; read without it).
  std::atomic<bool> parked_{false};
  // Set by the destructor and Terminate: assists return at their next check.
  std::atomic<bool> assist_off_{false};

  // Hard limits (limits.h): set by Start before the I/O thread runs, then
  // read-only; and each worker's memory cgroup, removed after its worker
  // is reaped (declared before workers_: destroyed after them).
  std::unique_ptr<PoolLimits> limits_;
  absl::flat_hash_map<WorkerId, std::unique_ptr<MemoryCgroup>> cgroups_
      ABSL_GUARDED_BY(io_mu_);

  absl::flat_hash_map<WorkerId, std::unique_ptr<WorkerConnection>> workers_
      ABSL_GUARDED_BY(io_mu_);
  bool park_timer_armed_ ABSL_GUARDED_BY(io_mu_) = false;
  absl::Time next_observe_ ABSL_GUARDED_BY(io_mu_) = absl::InfiniteFuture();
  // Workers whose pidfd fired while a caller held their socket, or whose
  // socket closed after they had exited.
  std::vector<WorkerId> exits_deferred_ ABSL_GUARDED_BY(io_mu_);
  // kSpawn actions not carried out yet. A worker's death signal
  // (PR_SET_PDEATHSIG) follows the thread that spawned it, so only the I/O
  // thread spawns, and it does so last in its turn: after the answers,
  // exits and resolutions of that turn, which a spawn (a vfork and exec)
  // would delay.
  std::vector<std::pair<WorkerId, size_t>> spawns_pending_ ABSL_GUARDED_BY(io_mu_);
  std::vector<WorkerId> unspawned_ ABSL_GUARDED_BY(io_mu_);  // see DropPendingSpawn

  // Per-slot view of the workers for other threads: the live worker's pid
  // and status page, and what earlier workers in the slot left behind.
  struct SlotRecord {
    int pid = 0;
    std::shared_ptr<SharedMemory> page;
    absl::Time started;
    WorkerStats past;  // totals of the slot's dead workers
  };
  mutable absl::Mutex slots_mu_ ABSL_ACQUIRED_AFTER(io_mu_);
  std::vector<SlotRecord> slots_ ABSL_GUARDED_BY(slots_mu_);
  void FoldIntoPastLocked(SlotRecord& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(slots_mu_);
  std::atomic<uint64_t> shm_args_{0};      // PoolStats::shared_memory_args
  std::atomic<uint64_t> shm_results_{0};   // PoolStats::shared_memory_results
  std::atomic<uint64_t> direct_calls_{0};  // PoolStats::direct_calls
  std::atomic<uint64_t> caller_reads_{0};  // PoolStats::caller_reads

  std::unique_ptr<WorkerConnection> spare_ ABSL_GUARDED_BY(io_mu_);
  WorkerId next_spare_id_ ABSL_GUARDED_BY(io_mu_) = kSpareIdBase;
  int spare_deaths_ ABSL_GUARDED_BY(io_mu_) = 0;  // in a row, unadopted
  bool spares_off_ ABSL_GUARDED_BY(io_mu_) = false;
  std::atomic<int> spare_pid_{0};  // PoolStats::spare_worker_pid
  // Starts workers: spawned, or forked from the template (kZygote). Used
  // by the I/O thread alone, but for Describe().
  WorkerLauncher launcher_;

  std::thread io_thread_;
  std::atomic<std::thread::id> io_thread_id_{};  // set by the I/O thread
};

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_LOCAL_DRIVER_H_
