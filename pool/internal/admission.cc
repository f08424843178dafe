#include "pool/internal/admission.h"

#include <algorithm>

namespace procpool::internal {

size_t Admission::Acquire(size_t max_units, absl::Time deadline) {
  if (max_units == 0) return 0;
  absl::MutexLock l(&mu_);
  auto free_or_closed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closed_ || in_use_ < limit_;
  };
  if (!free_or_closed()) {
    if (deadline <= absl::InfinitePast()) return 0;
    ++waiting_;
    const bool got = mu_.AwaitWithDeadline(absl::Condition(&free_or_closed), deadline);
    --waiting_;
    if (!got) return 0;
  }
  const size_t n = closed_ ? max_units : std::min(max_units, limit_ - in_use_);
  in_use_ += n;
  return n;
}

void Admission::Release(size_t units) {
  absl::MutexLock l(&mu_);
  in_use_ -= std::min(units, in_use_);
}

void Admission::Close() {
  absl::MutexLock l(&mu_);
  closed_ = true;
}

size_t Admission::in_use() const {
  absl::MutexLock l(&mu_);
  return in_use_;
}

size_t Admission::waiting() const {
  absl::MutexLock l(&mu_);
  return waiting_;
}

bool Admission::closed() const {
  absl::MutexLock l(&mu_);
  return closed_;
}

}  // namespace procpool::internal
