// TaskState: the shared state behind a Future.
//
// Created by the submitting thread, queued and dispatched by the pool's I/O
// thread (or, on the pool's serial fast path, by the submitting thread),
// completed exactly once (by the I/O thread, by a thread waiting on it that
// reads its worker's answer itself, or by a caller that cancels a task
// before it is dispatched). Thread-safe.

#ifndef PROCPOOL_POOL_INTERNAL_TASK_STATE_H_
#define PROCPOOL_POOL_INTERNAL_TASK_STATE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pool/internal/claim_table.h"

namespace procpool::internal {

class TaskState;

// Lets a future ask its pool to stop the worker running its task, and lets
// a thread that waits on a dispatched task do that task's I/O itself (the
// pool's serial fast path, see LocalDriver::AssistWait) instead of waiting to
// be woken. The pool detaches it when it goes away, after which requests are
// ignored and waits are plain waits.
//
// Thread-safe. Request() never blocks for long; Assist() may run as long as
// the pool's assist runs (bounded, a few milliseconds); Detach() waits for
// the assists in progress to return.
class CancelChannel {
 public:
  using Sink = std::function<void(uint64_t task_id)>;
  // Waits on `task` until it is done or `deadline`, doing its worker's I/O
  // on the calling thread, or returns at once if it cannot help.
  using WaitSink = std::function<void(const TaskState& task,
                                      absl::Time deadline)>;
  // Told that a done-callback was added to a dispatched task: the pool
  // must deliver the answer even if no thread waits for it.
  using WatchSink = std::function<void()>;
  explicit CancelChannel(Sink sink, WaitSink wait_sink = nullptr,
                         WatchSink watch_sink = nullptr)
      : sink_(std::move(sink)),
        wait_sink_(std::move(wait_sink)),
        watch_sink_(std::move(watch_sink)) {}
  // True if the pool took the request.
  bool Request(uint64_t task_id) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::ReaderMutexLock l(&mu_);
    if (!sink_) return false;
    sink_(task_id);
    return true;
  }
  // See WaitSink. A no-op for a pool without the fast path, or once
  // detached.
  void Assist(const TaskState& task, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::ReaderMutexLock l(&mu_);
    if (wait_sink_) wait_sink_(task, deadline);
  }
  // See WatchSink. Never blocks for long.
  void Watched() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::ReaderMutexLock l(&mu_);
    if (watch_sink_) watch_sink_();
  }
  void Detach() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    sink_ = nullptr;
    wait_sink_ = nullptr;
    watch_sink_ = nullptr;
  }

 private:
  // Readers call the sinks (concurrently); Detach writes them.
  absl::Mutex mu_;
  Sink sink_ ABSL_GUARDED_BY(mu_);
  WaitSink wait_sink_ ABSL_GUARDED_BY(mu_);
  WatchSink watch_sink_ ABSL_GUARDED_BY(mu_);
};

// Per-task policy, set by the submitter before the task is queued and
// read-only afterwards.
struct TaskPolicy {
  // Longest the task may run once a worker starts it.
  absl::Duration timeout = absl::InfiniteDuration();
  // How many times to re-run the task when its worker dies under it.
  int retries = 0;
};

// How errors name a task and its input: "task 'add' (input #3)".
inline std::string DescribeTaskInput(std::string_view task, size_t index) {
  return absl::StrCat("task '", absl::string_view(task.data(), task.size()),
                      "' (input #", index, ")");
}

class ChunkState;  // chunk_state.h

// A task's result bytes: owned, or borrowed from shared memory that stays
// reserved for them (and mapped) while `lease` lives. Move-only.
class ResultBytes {
 public:
  ResultBytes() = default;
  ResultBytes(std::string owned) : owned_(std::move(owned)) {}  // NOLINT
  ResultBytes(std::string_view borrowed, std::shared_ptr<const void> lease)
      : borrowed_(borrowed), lease_(std::move(lease)) {}
  ResultBytes(ResultBytes&&) = default;
  ResultBytes& operator=(ResultBytes&&) = default;

  std::string_view view() const {
    return lease_ != nullptr ? borrowed_ : std::string_view(owned_);
  }
  bool borrowed() const { return lease_ != nullptr; }
  // The bytes as a string of one's own: moved out when owned, copied (and
  // the lease let go) when borrowed.
  std::string TakeOwned() && {
    if (lease_ == nullptr) return std::move(owned_);
    std::string copy(borrowed_);
    lease_.reset();
    return copy;
  }

 private:
  std::string owned_;
  std::string_view borrowed_;
  std::shared_ptr<const void> lease_;
};

class TaskState {
 public:
  enum Phase : int { kQueued = 0, kDispatched = 1, kFinished = 2 };

  TaskState(uint32_t task, size_t index) : task_(task), index_(index) {}
  virtual ~TaskState() = default;
  TaskState(const TaskState&) = delete;
  TaskState& operator=(const TaskState&) = delete;

  // The task to run; for a ChunkState, with kChunkBit set.
  uint32_t task() const { return task_; }

  // This task as a chunk of map items, or nullptr.
  virtual ChunkState* AsChunk() { return nullptr; }
  size_t index() const { return index_; }

  // Serialized arguments. Written by the submitter before the task is
  // queued; afterwards read (and, for a chunk, rebuilt) only by the pool's
  // scheduler and driver under their lock, which also release them
  // (ReleaseArgs) once they are done with the task: completing a task
  // leaves them alone, since a caller may complete one (Cancel) while the
  // driver still writes them to a worker.
  std::string& args() {
    if (parked_pin_ != nullptr) Unpark();
    return args_;
  }
  void ReleaseArgs() {
    std::string().swap(args_);
    parked_pin_.reset();
    parked_ = {};
  }
  // Frees the argument bytes while an exact copy of them, `copy`, stays in
  // memory that `pin` keeps mapped and unchanged (a worker's call region,
  // LocalDriver::WriteSends): args() copies them back should they be
  // needed again, and ReleaseArgs() lets the pin go. For a task that is
  // never sent again once it has run (TaskPolicy::retries == 0), so that a
  // huge argument is held once, not twice.
  void ParkArgs(std::string_view copy, std::shared_ptr<const void> pin) {
    std::string().swap(args_);
    parked_ = copy;
    parked_pin_ = std::move(pin);
  }

  // Pool-assigned id; set under the pool's mutex when queued.
  uint64_t id() const { return id_; }
  void set_id(uint64_t id) { id_ = id; }

  const TaskPolicy& policy() const { return policy_; }
  TaskPolicy& mutable_policy() { return policy_; }

  // Why workers that ran this task (for a chunk: its item at `position`)
  // died under it, oldest first. The scheduler's only.
  virtual std::vector<std::string>& crashes(size_t position = 0) {
    (void)position;
    return crashes_;
  }

  // Set by the pool when queued; used by RequestStop().
  void set_cancel_channel(std::shared_ptr<CancelChannel> c) {
    cancel_channel_ = std::move(c);
  }
  // Asks the pool to stop this task wherever it is (Future::Terminate): a
  // running task's worker is stopped. True if the request was taken; the
  // future then resolves with kCancelled unless the task finishes first.
  bool RequestStop() {
    if (Done() || cancel_channel_ == nullptr) return false;
    return cancel_channel_->Request(id_);
  }

  // ---- Phase changes. Each is atomic against the others and Cancel(). ----

  // The scheduler: queued -> dispatched as call `seq` of a worker whose
  // claim table is `claims` (null: the call cannot be taken back). False if
  // the task was cancelled meanwhile.
  // The table must stay valid while the task is dispatched there. `worker`
  // (the scheduler's id of it) is kept for worker().
  bool TryDispatch(ClaimTable* claims = nullptr, uint64_t seq = 0, uint64_t worker = 0);
  // The worker the task was last dispatched to (0: none yet). Written and
  // read under the pool's I/O lock only.
  uint64_t worker() const { return worker_; }
  // The scheduler: dispatched -> queued, to run again (its worker is gone,
  // or answered part of a chunk). `ran`: it had started (it crashed, or
  // ran and lost its answer), so Cancel() can no longer promise it never
  // ran, and refuses. False if it was cancelled.
  bool Requeue(bool ran = false) ABSL_LOCKS_EXCLUDED(mu_);
  // The scheduler: dispatched -> queued if the worker has not started it
  // yet, which it then never will (ClaimTable::TryCancel). False otherwise.
  bool Reclaim() ABSL_LOCKS_EXCLUDED(mu_);
  bool queued() const { return phase_.load() == kQueued; }

  // Cancels the task if it has never started and never will: queued in the
  // pool, or queued in a worker that has not started it (claimed back
  // through its claim table). Completes it with `why` and returns true;
  // false once it is running or done, or if it ran before (it waits to run
  // again after its worker died).
  bool Cancel(absl::Status why) ABSL_LOCKS_EXCLUDED(mu_);

  // Records the outcome; true the first time, false (and no effect) after.
  // Runs the done-callbacks on the calling thread, outside any lock.
  bool Complete(absl::Status status, ResultBytes payload = {})
      ABSL_LOCKS_EXCLUDED(mu_);

  bool Done() const { return done_flag_.load(std::memory_order_acquire); }
  // Block until done (at most `timeout` for WaitFor, which returns true if
  // done). A waiter on a dispatched task may first do its worker's I/O on
  // its own thread (CancelChannel::Assist), so a done-callback of this or
  // another task may then run on the waiting thread.
  void Wait() const ABSL_LOCKS_EXCLUDED(mu_);
  bool WaitFor(absl::Duration timeout) const ABSL_LOCKS_EXCLUDED(mu_);

  // Valid once Done(). The payload is the result's archive when OK. It
  // may be borrowed from a worker's shared memory: release it as soon as
  // it is decoded, so that the worker can use that memory again.
  const absl::Status& status() const { return status_; }
  std::string_view payload() const { return payload_.view(); }
  void ReleasePayload() { payload_ = ResultBytes(); }

  // Runs `fn` once the task is done: now, on this thread, if it already is
  // (and returns 0); otherwise on the thread that completes it (and returns
  // a key for RemoveDoneCallback, never 0). `fn` must not block. If `fn`
  // throws, the exception is reported on stderr (one line naming the task's
  // index and the exception's type and what()), counted (see
  // set_callback_errors) and goes no further: not to the thread that
  // completes the task, which may be the pool's I/O thread or one waiting on
  // an unrelated future.
  uint64_t OnDone(std::function<void()> fn) ABSL_LOCKS_EXCLUDED(mu_);

  // Removes the callback OnDone registered under `key`, so that it never
  // runs. False if it has already been taken to run (or `key` is unknown).
  bool RemoveDoneCallback(uint64_t key) ABSL_LOCKS_EXCLUDED(mu_);

  // Set by the pool when it queues the task: the counter of done-callbacks
  // that threw (PoolStats::callback_errors). Without one, such callbacks
  // are only reported on stderr.
  void set_callback_errors(std::shared_ptr<std::atomic<uint64_t>> counter) {
    callback_errors_ = std::move(counter);
  }

  // The number of done-callbacks registered and not yet run.
  size_t NumDoneCallbacksForTesting() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    return callbacks_.size();
  }

 private:
  void Unpark() {
    args_.assign(parked_.data(), parked_.size());
    parked_pin_.reset();
    parked_ = {};
  }

  const uint32_t task_;
  const size_t index_;
  uint64_t id_ = 0;
  std::string args_;
  std::string_view parked_;  // see ParkArgs
  std::shared_ptr<const void> parked_pin_;
  TaskPolicy policy_;
  std::vector<std::string> crashes_;
  std::shared_ptr<CancelChannel> cancel_channel_;
  std::atomic<int> phase_{kQueued};
  // Where the worker that holds it claims it. Written by the scheduler
  // while queued, before TryDispatch publishes them; read under mu_.
  ClaimTable* claims_ = nullptr;
  uint64_t claim_seq_ = 0;
  uint64_t worker_ = 0;
  bool ran_ ABSL_GUARDED_BY(mu_) = false;

  // Runs one done-callback; see OnDone for what happens when it throws.
  void RunCallback(const std::function<void()>& fn) const noexcept;
  // Written before the task is queued, read when callbacks run.
  std::shared_ptr<std::atomic<uint64_t>> callback_errors_;

  mutable absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  struct Callback {
    uint64_t key;
    std::function<void()> fn;
  };
  std::vector<Callback> callbacks_ ABSL_GUARDED_BY(mu_);
  uint64_t next_callback_key_ ABSL_GUARDED_BY(mu_) = 1;
  std::atomic<bool> done_flag_{false};
  // Written once under mu_ before done_flag_ is set; read-only afterwards.
  absl::Status status_;
  ResultBytes payload_;
};

// A TaskState that also caches the decoded result.
template <class R>
class TypedTaskState final : public TaskState {
 public:
  using TaskState::TaskState;

  // Blocks until done; decodes the payload once (the first caller decodes,
  // concurrent callers wait for it).
  const absl::StatusOr<R>& Decoded();
  // The same, for moving the value out; only for the last Future of this
  // state, after Decoded() returned (see OnlyFuture).
  absl::StatusOr<R>* MutableDecoded() { return &decoded_; }

  // The Futures sharing this state. Only Futures read the decoded value
  // (the pool's own references never do), so when one finds it is the only
  // one, no other thread reads the value, and every read by a Future gone
  // meanwhile happened before (release on drop, acquire here).
  void AddFuture() { futures_.fetch_add(1, std::memory_order_relaxed); }
  void DropFuture() { futures_.fetch_sub(1, std::memory_order_release); }
  bool OnlyFuture() const {
    return futures_.load(std::memory_order_acquire) == 1;
  }

 private:
  // Not std::call_once: glibc's pthread_once makes a futex syscall on every
  // first call, which was one syscall per result.
  enum DecodeState : int { kNotDecoded = 0, kDecoding = 1, kDecoded = 2 };
  std::atomic<int> decode_state_{kNotDecoded};
  absl::StatusOr<R> decoded_{absl::UnknownError("not decoded")};
  std::atomic<int> futures_{0};
};

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_TASK_STATE_H_
