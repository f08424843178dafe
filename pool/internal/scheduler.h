// Scheduler: every decision a pool makes about its tasks and its workers,
// as a single-threaded state machine that does no I/O.
//
// It holds the queue, what each worker has in flight, each task's policy
// (time limit, retries) per item, the worker slots and their respawn
// backoff, the shutdown state and the counters behind Stats(). It consumes
// events (a task submitted, a worker started / ready / exited, answers from
// a worker, what a worker is running now, time passing, shutdown) and
// appends actions to the caller's list (start a worker for a slot, send a
// call to a worker, signal or close a worker, resolve a task). It knows no
// sockets, processes, threads, MPI or clock: time is an argument. The
// drivers (local_driver.h, mpi_driver.h) translate between the world and
// these events and actions; the simulation test drives it against simulated
// workers.
//
// The tasks themselves (TaskState, ChunkState) are shared with the callers
// that hold their futures. The scheduler changes their phase only through
// their thread-safe methods (TryDispatch, Requeue, Reclaim), so a caller's
// Cancel() races with it safely, and it never completes one: completing
// runs the future's callbacks, so it is an action (kResolve) the driver
// carries out after the event returns.
//
// Guarantees (checked by the simulation after every step):
//   - every submitted task, and every item of a chunk, is resolved exactly
//     once, and only by: its worker's answer; its own crash (after its
//     retries, counted per item); its time limit; a cancel or stop it was
//     asked for; Shutdown's cancel_pending or deadline; Terminate; a broken
//     pool (kBreakPool after a crash, or workers that cannot start);
//   - a call the worker never started is never blamed for the worker's
//     death, and a task cancelled while queued in a worker never runs;
//   - a worker slot is never left empty while the pool runs or drains;
//   - once workers answer, a drain completes (Drained()).
//
// Not thread-safe: the driver serialises every call (the local driver
// holds its I/O lock). Counters read by Stats() are atomics.

#ifndef PROCPOOL_POOL_INTERNAL_SCHEDULER_H_
#define PROCPOOL_POOL_INTERNAL_SCHEDULER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "pool/internal/claim_table.h"
#include "pool/internal/shared_memory.h"
#include "pool/internal/task_state.h"
#include "pool/options.h"

namespace procpool::internal {

// A worker process (or MPI agent), unique for the scheduler's life; slots
// are reused, worker ids never.
using WorkerId = uint64_t;

struct SchedulerConfig {
  // How many workers serve at once (worker processes, or MPI agent ranks).
  size_t slots = 1;
  // Local worker processes answer their calls in order, publish what they
  // run (Observe) and claim calls (ClaimTable); a dead one is replaced.
  // MPI agents answer in any order, run up to `capacity` calls at once,
  // enforce time limits and retries themselves, prove they are alive by
  // being heard from, and are never replaced.
  enum class Kind { kProcess, kAgent };
  Kind kind = Kind::kProcess;
  uint64_t max_tasks_per_child = 0;   // calls a process is sent (0: no limit)
  WorkerDeathPolicy on_worker_death = WorkerDeathPolicy::kReplaceWorker;
  absl::Duration start_timeout = absl::Seconds(30);
  absl::Duration kill_grace = absl::Milliseconds(500);
  // An idle worker closed at the end of a drain gets this long to exit on
  // its own before it is stopped.
  absl::Duration close_grace = absl::Seconds(2);
  // Agents: lost when not heard from for this long.
  absl::Duration liveness_timeout = absl::InfiniteDuration();
  // Agents: re-run a lost agent's calls elsewhere (else they fail).
  bool requeue_on_loss = true;
  // Replacements that fail to start in a row before the pool breaks.
  int max_start_failures = 5;
  // A call's arguments larger than this are refused (kResourceExhausted).
  size_t max_call_bytes = size_t{1} << 30;
  // Arguments sent to one worker in one go (several calls) stop at this.
  size_t batch_bytes = size_t{1} << 20;
  // Read by error messages and by the Python-like knobs.
  std::string limit_name_for_timeout = "SubmitOptions::timeout";
};

// One answer from a worker: the outcome of the call of task `id`.
struct Answer {
  uint64_t id = 0;
  uint8_t code = 0;  // ResultCode, region flags already resolved
  uint64_t run_ns = 0;
  ResultBytes bytes;  // a chunk: the chunk result (wire.h)
};

// What the driver learnt about a worker that exited (or, for an agent, was
// given up on).
struct WorkerExit {
  // How it ended, e.g. "killed by signal 9 (SIGKILL)", "exited with code 0".
  std::string how;
  bool exited_zero = false;     // exited normally with code 0
  bool killed = false;          // by SIGKILL or SIGTERM (maybe from outside)
  // From the status page (processes only).
  RetireReason retired = RetireReason::kNone;
  uint64_t running_task = 0;    // 0: between calls
  uint32_t running_item = 0;    // item of a running chunk
  uint64_t tasks_done = 0;
  uint64_t rss_bytes = 0;
  uint64_t rss_limit = 0;
  // The error its hello carried (it could not load the plugins or run the
  // initializer), if it sent one.
  absl::Status hello_error;
  // "; its last stderr lines: ..." or empty: appended to crash messages.
  std::string stderr_tail;
  // A hard limit (PoolOptions::limits) it crossed, naming the limit and
  // what was observed (limits.h); empty: none. The call it was running
  // fails with kResourceExhausted, not retried.
  std::string limit;
};

// What the scheduler asks its driver to do, in three lists that the driver
// carries out in this order: sends (so calls are on their way first), then
// control actions, then resolutions (which run futures' callbacks).
struct SendAction {
  // Send `call` (call number `seq` of `worker`) to `worker`; for a chunk,
  // its first `items` unanswered items (0: all of them). Consecutive sends
  // to one worker may share a message.
  WorkerId worker = 0;
  TaskState* call = nullptr;  // kept alive by the scheduler
  uint64_t seq = 0;
  size_t items = 0;
};

struct ResolveAction {
  // Complete `task` with `status` and `bytes` (running its callbacks).
  std::shared_ptr<TaskState> task;
  absl::Status status;
  ResultBytes bytes;
};

struct Action {
  enum class Kind : uint8_t {
    // Start a worker for `slot`, known as `worker` from now on. The driver
    // answers with OnSpawned or OnSpawnFailed.
    kSpawn,
    // Nothing more will be sent to `worker`: close the sending side of the
    // connection, so that it exits once it has answered.
    kClose,
    // Send `signal` to `worker` (SIGTERM, or SIGKILL: for an agent, give
    // up on it, `text` saying why). Its exit is reported with OnExit.
    kSignal,
    // An agent should stop running `task` (it was resolved here).
    kCancelRemote,
    // A worker of `slot` is gone; `text` says why (Stats' restart
    // reasons); `restart` says whether it counts as a restart.
    kSlotNote,
  };
  Kind kind;
  WorkerId worker = 0;
  size_t slot = 0;
  int signal = 0;
  bool restart = false;
  std::shared_ptr<TaskState> task;
  std::string text;
};

struct Actions {
  std::vector<SendAction> sends;
  std::vector<Action> controls;
  std::vector<ResolveAction> resolves;
  bool empty() const { return sends.empty() && controls.empty() && resolves.empty(); }
};

class Scheduler {
 public:
  enum class StartState { kStarting, kStarted, kFailed };

  explicit Scheduler(SchedulerConfig config);
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // The task table's names (for messages), known once a worker said hello.
  void SetTaskNames(std::vector<std::string> names) { task_names_ = std::move(names); }

  // ---- Events. Each appends what to do to `out`. ----

  // Starts a worker in every slot.
  void Start(absl::Time now, Actions& out);
  // The driver started `worker` (a kSpawn); `claims` is its claim table
  // (processes; null for agents), `pid` its process id (or an agent's, for
  // messages). The driver keeps `claims` valid until it has carried out
  // the actions of the OnExit that reports the worker's end: tasks refer
  // to it while they are dispatched there.
  void OnSpawned(WorkerId worker, int pid, ClaimTable* claims);
  void OnSpawnFailed(WorkerId worker, absl::Status why, absl::Time now, Actions& out);
  // It said hello; `capacity` is how many calls it runs at once (agents).
  void OnReady(WorkerId worker, size_t capacity, absl::Time now, Actions& out);
  // A task from a caller (its args already encoded).
  void Submit(std::shared_ptr<TaskState> task, absl::Time now, Actions& out);
  // Tasks from callers, queued in order and then dispatched together, so
  // that a worker is sent its share in one batch (`tasks` is left empty).
  void SubmitMany(std::vector<std::shared_ptr<TaskState>>& tasks, absl::Time now,
                  Actions& out);
  // Answers in the order the worker sent them.
  void OnAnswers(WorkerId worker, std::vector<Answer>& answers, absl::Time now,
                 Actions& out);
  // The worker broke the protocol: it is killed, and its exit blames the
  // call it was running (or its oldest unanswered) with `why` (kDataLoss).
  void OnProtocolError(WorkerId worker, absl::Status why, absl::Time now,
                       Actions& out);
  void OnExit(WorkerId worker, const WorkerExit& exit, absl::Time now, Actions& out);
  // What a process runs now, from its status page (`running_task` 0:
  // nothing); `since` is when that call (or item) started.
  void Observe(WorkerId worker, uint64_t running_task, uint32_t running_item,
               absl::Time since);
  // An agent was heard from.
  void OnHeard(WorkerId worker, absl::Time now);
  // Future::Terminate(): stop the task `id` wherever it is.
  void StopTask(uint64_t id, absl::Time now, Actions& out);
  // Stop accepting tasks; run what is left (with `cancel_pending`, resolve
  // what is still queued with kCancelled) until `deadline`, when whatever
  // is left is resolved with kCancelled and its workers stopped; then close
  // the workers. Calling it again can only bring the deadline forward.
  void Shutdown(bool cancel_pending, absl::Time deadline, absl::Time now,
                Actions& out);
  // Resolve everything with kCancelled now and kill every worker.
  void Terminate(absl::Time now, Actions& out);
  // Timers that came due (see NextWakeup).
  void Tick(absl::Time now, Actions& out);

  // ---- State ----

  // When Tick should run next (InfiniteFuture: no timer).
  absl::Time NextWakeup() const;
  // Whether the driver should report Observe() for `worker`s about every
  // millisecond: some call in flight there has a time limit.
  bool WantsObservation() const { return timed_calls_ > 0; }
  const std::vector<WorkerId>& ObservedWorkers();

  StartState start_state() const { return start_state_; }
  const absl::Status& start_error() const { return start_error_; }
  // Shut down (or terminated, or broken) and every worker has exited.
  bool Drained() const;
  bool accepting() const { return accepting_; }
  const absl::Status& refuse_reason() const { return refuse_reason_; }
  // Whether Shutdown's deadline cancelled anything.
  bool cut_by_deadline() const { return cut_by_deadline_; }
  bool QueueEmpty() const { return queue_.empty(); }
  bool stopping() const { return stopping_; }
  // Nothing queued and no call in flight.
  bool Idle() const { return queued_ == 0 && inflight_calls_ == 0; }
  // A ready, idle process a lone task could go to at once (the serial fast
  // path), or 0.
  WorkerId IdleWorker() const;
  // Whether the task `id` is the only call `worker` holds (the serial fast
  // path reads its answer itself then).
  bool LoneCall(WorkerId worker, uint64_t id) const;
  // The worker's connection closed (EOF) while it may still run: nothing
  // more is sent to it, and unless it exits on its own within
  // kExitAfterDisconnect it is killed (its exit then blames what it ran, as
  // any). Its slot is freed by its exit.
  void OnDisconnected(WorkerId worker, absl::Time now, Actions& out);
  static constexpr absl::Duration kExitAfterDisconnect = absl::Milliseconds(200);
  size_t ready_workers() const { return ready_count_; }
  // Every ready worker has its window of calls full (so none can take
  // another before some answer comes).
  bool Saturated() const;

  // Average run time of a call (a chunk: of an item) as answers report it.
  uint64_t avg_task_ns() const { return avg_ns_.load(std::memory_order_relaxed); }
  // Calls sent at once to one worker for the current average.
  size_t BatchSize() const;
  // Average result size of a call (a chunk: of an item), as answers report
  // it.
  uint64_t avg_result_bytes() const {
    return avg_bytes_.load(std::memory_order_relaxed);
  }
  // A map's automatic chunk: about kMapChunkNs of work at `avg_ns` (1 while
  // nothing is measured), larger than a batch of calls because its items
  // share one answer, and so one wake-up of the caller's threads; but no
  // more than about kMapChunkBytes of results at `avg_bytes`, which the
  // caller holds until the chunk's items are consumed.
  static constexpr uint64_t kMapChunkNs = 10'000'000;
  static constexpr uint64_t kMapChunkBytes = uint64_t{4} << 20;
  static size_t MapChunkFor(uint64_t avg_ns, uint64_t avg_bytes);
  // How many items a map reads ahead to keep `processes` workers busy: with
  // automatic chunks (`chunksize` 0), two of them each and one more item;
  // with chunks of `chunksize` items, two of them each, and at least two
  // batches of calls each (BatchSize).
  static size_t MapWindowFor(uint64_t avg_ns, uint64_t avg_bytes, size_t chunksize,
                             size_t processes);

  struct Counters {
    uint64_t submitted = 0, succeeded = 0, failed = 0, pending = 0, in_flight = 0;
  };
  // Thread-safe.
  Counters counters() const;

 private:
  struct Call {
    std::shared_ptr<TaskState> task;
    uint64_t seq = 0;
    absl::Time sent;
    size_t items = 0;  // a chunk's items sent (0: all that were unanswered)
    // The scheduler already decided this call's fate (resolved it, or took
    // it back): its answer is dropped and its exit blames nothing.
    bool abandoned = false;
  };
  enum class WorkerState { kStarting, kReady, kClosing, kStopping, kGone };
  struct Worker {
    WorkerId id = 0;
    size_t slot = 0;
    int pid = 0;
    WorkerState state = WorkerState::kStarting;
    ClaimTable* claims = nullptr;
    size_t capacity = 1;
    uint64_t sent_seq = 0;       // calls sent so far
    uint64_t dispatched = 0;     // for max_tasks_per_child
    size_t load = 0;             // calls (processes) or items (agents) in flight
    size_t heap_pos = SIZE_MAX;  // in ready_heap_, or SIZE_MAX
    uint64_t stamp = 0;          // when it was last given work
    std::deque<Call> inflight;   // processes: in the order sent
    absl::btree_map<uint64_t, Call> by_id;  // agents
    size_t timed = 0;            // calls in flight with a time limit
    absl::Time last_answer = absl::InfinitePast();
    absl::Time last_heard;
    // What it runs, as last observed.
    uint64_t running_task = 0;
    uint32_t running_item = 0;
    absl::Time running_since;
    // Why the pool stopped it, if it did; and why to blame its exit.
    std::string stopped_why;
    bool start_timed_out = false;
    bool disconnected = false;  // its connection closed: nothing can be sent
    absl::Status protocol_error;
    bool ready_once = false;
  };
  enum class TimerKind { kStartDeadline, kKill, kTaskDeadline, kRespawn, kShutdown,
                         kLiveness, kSteal, kDisconnected };
  struct Timer {
    absl::Time at;
    TimerKind kind;
    WorkerId worker;  // or the slot, for kRespawn
    uint64_t check;   // what must still hold (task id, generation)
    bool operator>(const Timer& o) const { return at > o.at; }
  };

  // scheduler.cc
  Worker* Find(WorkerId id);
  // Puts a caller's task at the back of the queue (or resolves it, refused).
  void Queue(std::shared_ptr<TaskState> task, Actions& out);
  void SpawnSlot(size_t slot, absl::Time now, Actions& out);
  void StartFailed(Worker& w, const absl::Status& why, absl::Time now, Actions& out);
  // The slot's worker is gone (or going): start another unless the pool
  // is stopping with nothing left to run (then FillVacancies does, should
  // work come back).
  void SlotFreed(size_t slot, absl::Time now, Actions& out);
  void FillVacancies(absl::Time now, Actions& out);
  void Requeue(std::vector<std::shared_ptr<TaskState>>& tasks);
  void Resolve(std::shared_ptr<TaskState> task, absl::Status status, Actions& out,
               ResultBytes bytes = {});
  void StopWorker(Worker& w, std::string why, absl::Time now, Actions& out);
  void KillWorker(Worker& w, Actions& out);
  void Break(absl::Status why, absl::Time now, Actions& out);
  void ResolveEverything(const absl::Status& why, Actions& out);
  void MaybeCloseIdleWorkers(absl::Time now, Actions& out);
  void ArmTimer(absl::Time at, TimerKind kind, WorkerId worker, uint64_t check);
  void HandleTimer(const Timer& t, absl::Time now, Actions& out);
  std::string Describe(const TaskState& t) const;
  std::string DescribeItem(TaskState& t, size_t position) const;
  std::string WorkerName(const Worker& w) const;
  // scheduler_answers.cc
  void TakeAnswer(Worker& w, Call call, Answer& a, std::vector<std::shared_ptr<TaskState>>& requeue,
                  Actions& out);
  void HandleExit(Worker& w, const WorkerExit& exit, absl::Time now, Actions& out);
  // The worker died under item `item` of `call` (0 for a single call):
  // count the crash against that item's retries; run the call again, or
  // fail the item with `code` (and run the rest of a chunk again).
  void CrashItem(Call& call, size_t item, const std::string& crash,
                 const std::string& tail, absl::StatusCode code, bool no_retry,
                 std::vector<std::shared_ptr<TaskState>>& requeue, Actions& out);
  void CheckDeadline(Worker& w, absl::Time now, Actions& out);
  // scheduler_dispatch.cc
  void Dispatch(absl::Time now, Actions& out);
  bool Steal(absl::Time now);
  void ArmStealCheck(absl::Time at, absl::Time now);
  size_t Window(const Worker& w) const;
  bool OnLongCall(const Worker& w, absl::Time now) const;
  absl::Time HeadStarted(const Worker& w) const;
  void HeapPush(Worker* w);
  void HeapRemove(Worker* w);
  void HeapFix(Worker* w);
  void HeapSiftUp(size_t i);
  void HeapSiftDown(size_t i);
  bool HeapLess(const Worker* a, const Worker* b) const;
  void AddInflight(Worker& w, Call call);
  void RemovedFromFlight(Worker& w, const Call& call);

  const SchedulerConfig config_;
  std::vector<std::string> task_names_;

  absl::btree_map<WorkerId, std::unique_ptr<Worker>> workers_;  // ordered: replayable
  struct Slot {
    WorkerId current = 0;  // a starting or ready worker, or 0
    bool respawn_pending = false;
  };
  std::vector<Slot> slots_;
  bool vacancies_ = false;  // some slot may have no worker and no respawn due
  WorkerId next_worker_ = 1;
  int consecutive_start_failures_ = 0;
  absl::Time respawn_not_before_ = absl::InfinitePast();

  std::deque<std::shared_ptr<TaskState>> queue_;
  uint64_t next_id_ = 1;
  std::vector<Worker*> ready_heap_;  // ready processes/agents, least loaded first
  size_t ready_count_ = 0;
  size_t ready_capacity_ = 0;  // the sum of their capacities
  uint64_t stamp_ = 0;
  size_t timed_calls_ = 0;
  absl::Time steal_check_at_ = absl::InfinitePast();  // the kSteal timer armed
  absl::Time steal_scan_not_before_ = absl::InfinitePast();  // see Steal
  std::vector<WorkerId> observed_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;

  StartState start_state_ = StartState::kStarting;
  absl::Status start_error_;
  bool accepting_ = true;
  absl::Status refuse_reason_;
  bool stopping_ = false;
  bool broken_ = false;
  bool terminated_ = false;
  absl::Time shutdown_deadline_ = absl::InfiniteFuture();
  bool cut_by_deadline_ = false;

  std::atomic<uint64_t> avg_ns_{0};
  std::atomic<uint64_t> avg_bytes_{0};
  std::atomic<uint64_t> submitted_{0}, succeeded_{0}, failed_{0};
  std::atomic<uint64_t> queued_{0}, inflight_calls_{0};
};

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_SCHEDULER_H_
