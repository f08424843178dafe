#include "pool/internal/task_state.h"

#include <utility>

#include "absl/time/clock.h"

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
  std::vector<std::function<void()>> callbacks;
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
  for (auto& cb : callbacks) cb();
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

void TaskState::OnDone(std::function<void()> fn) {
  bool done;
  {
    absl::MutexLock l(&mu_);
    done = done_;
    if (!done) callbacks_.push_back(std::move(fn));
  }
  if (done) {
    fn();
    return;
  }
  // Its answer may be waiting for a thread that waits on it (the pool's
  // fast path): make sure the pool reads it anyway.
  if (cancel_channel_ != nullptr && phase_.load() == kDispatched) {
    cancel_channel_->Watched();
  }
}

}  // namespace procpool::internal
