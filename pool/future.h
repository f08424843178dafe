// Future<R>: the eventual result of one task submitted to a ProcessPool.
//
// Every future resolves exactly once, whatever the workers do: with the
// task's value, the task's exception, a worker crash, a cancellation, or a
// pool shutdown. Nothing that happens to a worker leaves a future pending
// forever.
//
// Two ways to read the outcome:
//   absl::StatusOr<R> Result()  never throws;
//   const R& Get()              throws procpool::TaskError, like Python's
//                               Future.result() and std::future::get()
//                               (on an rvalue future, R Get() returns the
//                               value itself).
//
// Status codes a future can carry:
//   kUnknown            the task threw; message has the type and what()
//   kInvalidArgument    the arguments did not decode in the worker
//   kAborted            the worker died while running the task (signal or
//                       exit code named), or the pool broke (kBreakPool)
//   kCancelled          cancelled before it ran, or the pool was destroyed
//   kFailedPrecondition submitted after Shutdown()
//   kNotFound           submitted through a TaskRef the plugins don't have
//   kDataLoss           the result did not decode in the caller
//
// Futures are cheap to copy (they share state) and thread-safe: any number
// of threads may wait on copies of one future.

#ifndef PROCPOOL_POOL_FUTURE_H_
#define PROCPOOL_POOL_FUTURE_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/cord.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/time/clock.h"
#include "pool/internal/task_state.h"
#include "tasks/serialize.h"

namespace procpool {

// Status payload keys set on a kUnknown status from a task's exception.
inline constexpr char kExceptionTypePayload[] = "procpool/exception_type";
inline constexpr char kExceptionWhatPayload[] = "procpool/exception_what";

// What Future::Get() and range iteration throw when a task failed.
class TaskError : public std::runtime_error {
 public:
  explicit TaskError(absl::Status status)
      : std::runtime_error(status.ToString()), status_(std::move(status)) {}

  const absl::Status& status() const { return status_; }
  absl::StatusCode code() const { return status_.code(); }
  // For a task that threw: the exception's type name (e.g.
  // "std::invalid_argument") and what(); empty otherwise.
  std::string exception_type() const {
    return PayloadString(kExceptionTypePayload);
  }
  std::string exception_what() const {
    return PayloadString(kExceptionWhatPayload);
  }

 private:
  std::string PayloadString(const char* key) const {
    auto p = status_.GetPayload(key);
    return p ? std::string(*p) : std::string();
  }
  absl::Status status_;
};

template <class R>
class Future {
 public:
  using value_type = R;

  // An invalid future (valid() == false); only assignment and valid() may
  // be called on it.
  Future() = default;

  // Copies share the outcome. A moved-from future is invalid.
  Future(const Future& other) : state_(other.state_) { Hold(); }
  Future(Future&& other) noexcept = default;
  Future& operator=(const Future& other) {
    if (this != &other) *this = Future(other);
    return *this;
  }
  Future& operator=(Future&& other) noexcept {
    if (this != &other) {
      Let();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  ~Future() { Let(); }

  bool valid() const { return state_ != nullptr; }

  // True once the outcome is known. Never blocks.
  bool Done() const { return state_->Done(); }

  // Blocks until the outcome is known.
  void Wait() const { state_->Wait(); }

  // Blocks for at most `timeout`; true if the outcome is known.
  bool WaitFor(absl::Duration timeout) const { return state_->WaitFor(timeout); }

  // Blocks until done; the value, or the failure as a Status. Never throws.
  absl::StatusOr<R> Result() const { return state_->Decoded(); }

  // Blocks until done (at most `timeout`: kDeadlineExceeded after it; the
  // task itself keeps going).
  absl::StatusOr<R> Result(absl::Duration timeout) const {
    if (!WaitFor(timeout)) {
      return absl::DeadlineExceededError(
          "the task did not finish within the wait's timeout");
    }
    return Result();
  }

  // Blocks until done; the value, which lives as long as any copy of this
  // future. Throws TaskError if the task failed.
  const R& Get() const& {
    const absl::StatusOr<R>& r = state_->Decoded();
    if (!r.ok()) throw TaskError(r.status());
    return *r;
  }

  // On an rvalue future (a temporary, or std::move(f)): blocks until done
  // and returns the value itself, so that `auto&& x = pool.Submit(...).Get()`
  // holds no reference into a state that dies with the temporary. The value
  // is moved out when this future is the only owner of the shared state (no
  // copy of it is left), and copied otherwise. Afterwards this future is
  // invalid (valid() == false), as std::future::get() leaves it. Throws
  // TaskError if the task failed, and then leaves the future as it was.
  R Get() && {
    const absl::StatusOr<R>& r = state_->Decoded();
    if (!r.ok()) throw TaskError(r.status());
    const Future self = std::move(*this);  // lets go of the state at return
    if (self.state_->OnlyFuture()) {
      // No other future is left to read the value (the pool never does).
      return *std::move(*self.state_->MutableDecoded());
    }
    return *r;
  }

  // Blocks for at most `timeout`; throws TaskError (kDeadlineExceeded) when
  // it runs out, like Python's result(timeout).
  const R& Get(absl::Duration timeout) const& {
    if (!WaitFor(timeout)) {
      throw TaskError(absl::DeadlineExceededError(
          "the task did not finish within the wait's timeout"));
    }
    return Get();
  }
  // The same on an rvalue future, returning the value as Get() && does (the
  // future stays valid when the wait runs out).
  R Get(absl::Duration timeout) && {
    if (!WaitFor(timeout)) {
      throw TaskError(absl::DeadlineExceededError(
          "the task did not finish within the wait's timeout"));
    }
    return std::move(*this).Get();
  }

  // Blocks until done; the failure as a TaskError, or std::nullopt if the
  // task succeeded (Python's Future.exception()).
  std::optional<TaskError> Exception() const {
    absl::Status s = status();
    if (s.ok()) return std::nullopt;
    return TaskError(std::move(s));
  }

  // Blocks until done; OK, or the failure. Never throws.
  absl::Status status() const {
    Wait();
    return state_->status();
  }

  // Cancels the task if it has not started, as Python's Future.cancel()
  // does: a task queued in the pool, or sent to a worker that has not
  // started it yet (the worker then skips it), resolves with kCancelled at
  // once and never runs; returns true. Returns false if it is running, has
  // run (it may wait to run again after its worker died), or is done.
  // Never blocks.
  bool Cancel() { return state_->Cancel(absl::CancelledError("cancelled before it ran")); }

  // Stops the task wherever it is: Cancel() if it has not started;
  // otherwise its worker is stopped (SIGTERM, then SIGKILL after
  // PoolOptions::kill_grace) and replaced, and the future resolves with
  // kCancelled unless the task finishes first. (Python cannot stop a
  // running task; pebble's cancel() does this.) Returns false if the future
  // was already done (or the pool is gone). Never blocks.
  bool Terminate() {
    if (Cancel()) return true;
    return state_->RequestStop();
  }

  // True if the future resolved with kCancelled. Never blocks.
  bool Cancelled() const {
    return Done() && state_->status().code() == absl::StatusCode::kCancelled;
  }

  // The position of this task's input: its index in a Map, or the
  // submission's sequence number in its pool for Submit.
  size_t index() const { return state_->index(); }

  // Calls `fn(*this)` once the future is done: at once on this thread if it
  // already is, otherwise on the pool's I/O thread or on a thread blocked
  // waiting for this future (which may read the answer itself), so `fn`
  // must be quick and must not block or wait on other futures.
  // If `fn` throws, the exception goes no further (not out of this call,
  // nor into the thread that runs it): it is reported on stderr, one line
  // with the task's index and the exception's type and what(), and
  // counted in PoolStats::callback_errors.
  void AddDoneCallback(std::function<void(const Future<R>&)> fn) const {
    Future<R> self = *this;
    state_->OnDone([self, fn = std::move(fn)] { fn(self); });
  }

  // For the pool's implementation.
  explicit Future(std::shared_ptr<internal::TypedTaskState<R>> state)
      : state_(std::move(state)) {
    Hold();
  }
  internal::TaskState* state_for_internal_use() const { return state_.get(); }

 private:
  // Count this future among the state's (TypedTaskState::OnlyFuture).
  void Hold() {
    if (state_ != nullptr) state_->AddFuture();
  }
  void Let() {
    if (state_ != nullptr) state_->DropFuture();
  }

  std::shared_ptr<internal::TypedTaskState<R>> state_;
};

// ---- Waiting on many futures ----

enum class WaitMode { kFirstCompleted, kFirstException, kAllCompleted };
inline constexpr WaitMode FIRST_COMPLETED = WaitMode::kFirstCompleted;
inline constexpr WaitMode FIRST_EXCEPTION = WaitMode::kFirstException;
inline constexpr WaitMode ALL_COMPLETED = WaitMode::kAllCompleted;

// Indices into the futures passed to Wait().
struct WaitResult {
  std::vector<size_t> done;
  std::vector<size_t> not_done;
};

namespace internal {

// Collects completions of a set of futures, in completion order.
class CompletionQueue {
 public:
  // `raised`: the future failed by raising (see Raised()).
  void Push(size_t index, bool raised) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    ready_.push_back(index);
    if (raised) ++raised_;
  }
  // Pushes first, first + 1, ..., first + n - 1 (none raised).
  void PushRange(size_t first, size_t n) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    for (size_t i = 0; i < n; ++i) ready_.push_back(first + i);
  }
  // Blocks until an index is ready or `deadline`; nullopt on timeout.
  std::optional<size_t> Pop(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !ready_.empty();
    };
    if (!mu_.AwaitWithDeadline(absl::Condition(&ready), deadline)) {
      return std::nullopt;
    }
    size_t i = ready_.front();
    ready_.pop_front();
    return i;
  }
  // Blocks until `pred(done_count, raised_count)` holds or `deadline`.
  template <class Pred>
  void AwaitCounts(size_t popped_base, Pred pred, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    auto cond = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return pred(popped_base + ready_.size(), raised_);
    };
    mu_.AwaitWithDeadline(absl::Condition(&cond), deadline);
  }

 private:
  absl::Mutex mu_;
  std::deque<size_t> ready_ ABSL_GUARDED_BY(mu_);
  size_t raised_ ABSL_GUARDED_BY(mu_) = 0;
};

// True if a done task ended by raising: failed for any reason other than a
// cancellation (what FIRST_EXCEPTION waits for, as in concurrent.futures).
inline bool Raised(const TaskState& s) {
  return !s.status().ok() && s.status().code() != absl::StatusCode::kCancelled;
}

// Done-callbacks registered on tasks; the ones that have not run are
// removed when this goes away, so that waits and abandoned AsCompleted
// ranges leave nothing behind on futures that are still pending. The tasks
// must outlive it. Move-only; not thread-safe.
class DoneCallbacks {
 public:
  DoneCallbacks() = default;
  DoneCallbacks(DoneCallbacks&& other) noexcept
      : keys_(std::exchange(other.keys_, {})) {}
  DoneCallbacks& operator=(DoneCallbacks&& other) noexcept {
    if (this != &other) {
      RemoveAll();
      keys_ = std::exchange(other.keys_, {});
    }
    return *this;
  }
  ~DoneCallbacks() { RemoveAll(); }

  // TaskState::OnDone: `fn` runs now if `task` is done.
  void Add(TaskState* task, std::function<void()> fn) {
    const uint64_t key = task->OnDone(std::move(fn));
    if (key != 0) keys_.emplace_back(task, key);
  }
  void RemoveAll() {
    for (const auto& [task, key] : keys_) task->RemoveDoneCallback(key);
    keys_.clear();
  }

 private:
  std::vector<std::pair<TaskState*, uint64_t>> keys_;
};

// Pushes each future's index into the returned queue once it is done (at
// once for those done already), with callbacks registered in `callbacks`.
template <class R>
std::shared_ptr<CompletionQueue> WatchAll(const std::vector<Future<R>>& fs,
                                          DoneCallbacks& callbacks) {
  auto q = std::make_shared<CompletionQueue>();
  for (size_t i = 0; i < fs.size(); ++i) {
    TaskState* s = fs[i].state_for_internal_use();
    callbacks.Add(s, [q, i, s] { q->Push(i, Raised(*s)); });
  }
  return q;
}

}  // namespace internal

// Blocks until the condition `mode` holds for `futures` or `timeout` passes
// (like concurrent.futures.wait). FIRST_EXCEPTION returns once a future has
// failed for a reason other than a cancellation (a cancelled future is done,
// not raised), or once all are done. Returns at once when the condition
// already holds or `timeout` is not positive; leaves no done-callback
// behind on the futures, so it may be called in a polling loop. Never
// throws.
template <class R>
WaitResult Wait(const std::vector<Future<R>>& futures,
                WaitMode mode = ALL_COMPLETED,
                absl::Duration timeout = absl::InfiniteDuration()) {
  const size_t n = futures.size();
  auto holds = [mode, n](size_t done, size_t raised) {
    switch (mode) {
      case WaitMode::kFirstCompleted:
        return done >= 1 || n == 0;
      case WaitMode::kFirstException:
        return raised >= 1 || done == n;
      case WaitMode::kAllCompleted:
        return done == n;
    }
    return true;
  };
  size_t done = 0, raised = 0;
  for (const Future<R>& f : futures) {
    const internal::TaskState& s = *f.state_for_internal_use();
    if (s.Done()) {
      ++done;
      if (internal::Raised(s)) ++raised;
    }
  }
  if (!holds(done, raised) && timeout > absl::ZeroDuration()) {
    const absl::Time deadline = absl::Now() + timeout;
    internal::DoneCallbacks callbacks;  // removed before returning
    std::shared_ptr<internal::CompletionQueue> q =
        internal::WatchAll(futures, callbacks);
    q->AwaitCounts(0, holds, deadline);
  }
  WaitResult out;
  for (size_t i = 0; i < n; ++i) {
    (futures[i].Done() ? out.done : out.not_done).push_back(i);
  }
  return out;
}

// One finished future, and which one it was.
template <class R>
struct Completed {
  size_t index;      // position in the vector given to AsCompleted
  Future<R> future;  // Done() is true
};

// Yields futures as they finish (like concurrent.futures.as_completed), each
// with its position in `futures`, so no future-to-input map is needed.
// An input range; iterating blocks until the next future finishes. With a
// timeout, advancing past the deadline with futures still pending throws
// TaskError(kDeadlineExceeded), as Python raises TimeoutError. Destroying
// the range removes its done-callbacks from the futures still pending.
// Move-only.
template <class R>
class AsCompletedRange {
 public:
  AsCompletedRange(std::vector<Future<R>> futures, absl::Duration timeout)
      : futures_(std::move(futures)),
        deadline_(absl::Now() + timeout),
        queue_(internal::WatchAll(futures_, callbacks_)) {}

  class iterator {
   public:
    using value_type = Completed<R>;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(AsCompletedRange* r) : r_(r) { Advance(); }
    const Completed<R>& operator*() const { return *current_; }
    const Completed<R>* operator->() const { return &*current_; }
    iterator& operator++() {
      Advance();
      return *this;
    }
    void operator++(int) { Advance(); }
    friend bool operator==(const iterator& it, std::default_sentinel_t) {
      return !it.current_.has_value();
    }

   private:
    void Advance() {
      current_.reset();
      if (r_->yielded_ == r_->futures_.size()) return;
      std::optional<size_t> i = r_->queue_->Pop(r_->deadline_);
      if (!i) {
        throw TaskError(absl::DeadlineExceededError(
            "AsCompleted: futures still pending at the deadline"));
      }
      ++r_->yielded_;
      current_.emplace(Completed<R>{*i, r_->futures_[*i]});
    }
    AsCompletedRange* r_ = nullptr;
    std::optional<Completed<R>> current_;
  };

  // Call once.
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  std::vector<Future<R>> futures_;
  absl::Time deadline_;
  // Declared before queue_, which WatchAll fills in, and after futures_,
  // whose tasks must outlive it.
  internal::DoneCallbacks callbacks_;
  std::shared_ptr<internal::CompletionQueue> queue_;
  size_t yielded_ = 0;
};

template <class R>
AsCompletedRange<R> AsCompleted(std::vector<Future<R>> futures,
                                absl::Duration timeout = absl::InfiniteDuration()) {
  return AsCompletedRange<R>(std::move(futures), timeout);
}

// ---- Implementation ----

template <class R>
const absl::StatusOr<R>& internal::TypedTaskState<R>::Decoded() {
  Wait();
  if (decode_state_.load(std::memory_order_acquire) == kDecoded) return decoded_;
  int expected = kNotDecoded;
  if (decode_state_.compare_exchange_strong(expected, kDecoding,
                                            std::memory_order_acq_rel)) {
    if (!status().ok()) {
      decoded_ = status();
    } else {
      try {
        decoded_ = internal::DecodeArchive<R>(payload());
      } catch (const std::exception& e) {
        decoded_ = absl::DataLossError(
            std::string("the task's result does not decode: ") + e.what());
      }
      ReleasePayload();
    }
    decode_state_.store(kDecoded, std::memory_order_release);
    decode_state_.notify_all();
    return decoded_;
  }
  // Another thread is decoding.
  while (expected != kDecoded) {
    decode_state_.wait(expected, std::memory_order_acquire);
    expected = decode_state_.load(std::memory_order_acquire);
  }
  return decoded_;
}

}  // namespace procpool

#endif  // PROCPOOL_POOL_FUTURE_H_
