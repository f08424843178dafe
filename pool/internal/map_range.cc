#include "pool/internal/map_range.h"


#include <exception>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "pool/internal/backend.h"
#include "tasks/signature.h"

namespace procpool::internal {

absl::Status CurrentInputError(size_t index) {
  const auto [type, what] = DescribeCurrentException("an exception of unknown type");
  absl::Status status = absl::UnknownError(
      absl::StrCat("reading input #", index, " of the map threw ", type,
                   what.empty() ? "" : ": ", what));
  status.SetPayload(kExceptionTypePayload, absl::Cord(type));
  status.SetPayload(kExceptionWhatPayload, absl::Cord(what));
  return status;
}

int MapContext::num_workers() const { return backend_->num_workers(); }

size_t MapContext::SuggestedWindow() const {
  return backend_->SuggestedWindow();
}

size_t MapContext::SuggestedChunkSize() const {
  return backend_->SuggestedChunkSize();
}

size_t MapContext::max_chunk_bytes() const {
  return backend_->max_chunk_bytes();
}

std::shared_ptr<Admission> MapContext::admission() const {
  return backend_ == nullptr ? nullptr : backend_->admission();
}

void MapContext::EnqueueMany(
    std::vector<std::shared_ptr<TaskState>>& tasks) const {
  backend_->EnqueueMany(tasks);
}

}  // namespace procpool::internal
