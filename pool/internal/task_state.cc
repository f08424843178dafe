#include "pool/internal/task_state.h"

#include <utility>

namespace procpool::internal {

bool TaskState::Cancel(absl::Status why) {
  int expected = kQueued;
  if (!phase_.compare_exchange_strong(expected, kFinished)) return false;
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
    std::string().swap(args_);
    phase_.store(kFinished);
    done_flag_.store(true, std::memory_order_release);
    callbacks.swap(callbacks_);
  }
  for (auto& cb : callbacks) cb();
  return true;
}

void TaskState::Wait() const {
  if (Done()) return;
  absl::MutexLock l(&mu_);
  mu_.Await(absl::Condition(&done_));
}

bool TaskState::WaitFor(absl::Duration timeout) const {
  if (Done()) return true;
  absl::MutexLock l(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&done_), timeout);
}

void TaskState::OnDone(std::function<void()> fn) {
  {
    absl::MutexLock l(&mu_);
    if (!done_) {
      callbacks_.push_back(std::move(fn));
      return;
    }
  }
  fn();
}

}  // namespace procpool::internal
