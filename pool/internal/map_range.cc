#include "pool/internal/map_range.h"

#include "pool/internal/backend.h"

namespace procpool::internal {

int MapContext::num_workers() const { return backend_->num_workers(); }

size_t MapContext::SuggestedWindow() const { return backend_->SuggestedWindow(); }

size_t MapContext::SuggestedChunkSize() const {
  return backend_->SuggestedChunkSize();
}

size_t MapContext::max_chunk_bytes() const { return backend_->max_chunk_bytes(); }

void MapContext::EnqueueMany(std::vector<std::shared_ptr<TaskState>>& tasks) const {
  backend_->EnqueueMany(tasks);
}

}  // namespace procpool::internal
