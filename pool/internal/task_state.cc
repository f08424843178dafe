#include "pool/internal/task_state.h"

#include <unistd.h>

#include <exception>
#include <utility>

#include "absl/time/clock.h"
#include "tasks/signature.h"

namespace procpool::internal {

bool TaskState::TryDispatch(ClaimTable* claims, uint64_t seq, uint64_t worker) {
  claims_ = claims;
  claim_seq_ = seq;
  worker_ = worker;
  int expected = kQueued;
  return phase_.compare_exchange_strong(expected, kDispatched);
}

bool TaskState::Requeue(bool ran) {
  absl::MutexLock l(&mu_);
  int expected = kDispatched;
  if (!phase_.compare_exchange_strong(expected, kQueued)) return false;
  ran_ = ran_ || ran;
  return true;
}

bool TaskState::Reclaim() {
  absl::MutexLock l(&mu_);
  if (phase_.load() != kDispatched || claims_ == nullptr ||
      !claims_->TryCancel(claim_seq_)) {
    return false;
  }
  phase_.store(kQueued);
  return true;
}

bool TaskState::Cancel(absl::Status why) {
  {
    // Under mu_, so that Requeue and Reclaim (which also take it) cannot
    // move the task between reading its phase and claiming it.
    absl::MutexLock l(&mu_);
    if (done_ || ran_) return false;
    int expected = kQueued;
    if (!phase_.compare_exchange_strong(expected, kFinished)) {
      if (expected != kDispatched || claims_ == nullptr ||
          !claims_->TryCancel(claim_seq_)) {
        return false;
      }
      phase_.store(kFinished);
    }
  }
  return Complete(std::move(why));
}

bool TaskState::Complete(absl::Status status, ResultBytes payload) {
  std::vector<Callback> callbacks;
  {
    absl::MutexLock l(&mu_);
    if (done_) return false;
    done_ = true;
    status_ = std::move(status);
    payload_ = std::move(payload);
    phase_.store(kFinished);
    done_flag_.store(true, std::memory_order_release);
    callbacks.swap(callbacks_);
  }
  for (const Callback& cb : callbacks) RunCallback(cb.fn);
  return true;
}

void TaskState::Wait() const {
  if (Done()) return;
  if (cancel_channel_ != nullptr && phase_.load() == kDispatched) {
    cancel_channel_->Assist(*this, absl::InfiniteFuture());
    if (Done()) return;
  }
  absl::MutexLock l(&mu_);
  mu_.Await(absl::Condition(&done_));
}

bool TaskState::WaitFor(absl::Duration timeout) const {
  if (Done()) return true;
  const absl::Time deadline = absl::Now() + timeout;
  if (cancel_channel_ != nullptr && phase_.load() == kDispatched) {
    cancel_channel_->Assist(*this, deadline);
    if (Done()) return true;
  }
  absl::MutexLock l(&mu_);
  return mu_.AwaitWithDeadline(absl::Condition(&done_), deadline);
}

uint64_t TaskState::OnDone(std::function<void()> fn) {
  uint64_t key = 0;
  {
    absl::MutexLock l(&mu_);
    if (!done_) {
      key = next_callback_key_++;
      callbacks_.push_back(Callback{key, std::move(fn)});
    }
  }
  if (key == 0) {
    RunCallback(fn);
    return 0;
  }
  // Its answer may be waiting for a thread that waits on it (the pool's
  // fast path): make sure the pool reads it anyway.
  if (cancel_channel_ != nullptr && phase_.load() == kDispatched) {
    cancel_channel_->Watched();
  }
  return key;
}

bool TaskState::RemoveDoneCallback(uint64_t key) {
  std::function<void()> removed;  // destroyed outside the lock
  absl::MutexLock l(&mu_);
  for (auto it = callbacks_.begin(); it != callbacks_.end(); ++it) {
    if (it->key == key) {
      removed = std::move(it->fn);
      callbacks_.erase(it);
      return true;
    }
  }
  return false;
}

// The boundary for callbacks: whoever completes a task (the I/O thread, a
// thread waiting on another future, a canceller) must not receive their
// exceptions, and on the I/O thread one would end the process.
void TaskState::RunCallback(const std::function<void()>& fn) const noexcept {
  try {
    fn();
    return;
  } catch (...) {
    const auto [type, what] = DescribeCurrentException("an exception of unknown type");
    if (callback_errors_ != nullptr) {
      callback_errors_->fetch_add(1, std::memory_order_relaxed);
    }
    const std::string line = absl::StrCat(
        "procpool: a done-callback of the task with index ", index_, " threw ",
        type, what.empty() ? "" : ": ", what, " (ignored)\n");
    // One write, so that the line is not interleaved with others.
    ssize_t r = ::write(STDERR_FILENO, line.data(), line.size());
    (void)r;
  }
}

}  // namespace procpool::internal
