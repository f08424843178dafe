#include "pool/internal/map_range.h"

#include <algorithm>
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

size_t MapChunkSize(size_t full, uint64_t read, uint64_t total, size_t workers) {
  const uint64_t w = std::max<size_t>(1, workers);
  uint64_t c = std::max<uint64_t>(full / 8, read / w);
  if (total > 0) c = std::min<uint64_t>(c, (total > read ? total - read : 0) / (2 * w));
  return static_cast<size_t>(std::clamp<uint64_t>(c, 1, std::max<size_t>(1, full)));
}

int MapContext::num_workers() const { return backend_->num_workers(); }

size_t MapContext::SuggestedWindow(size_t chunksize) const {
  return backend_->SuggestedWindow(chunksize);
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
