#include "pool/internal/chunk_state.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace procpool::internal {

size_t ChunkState::unanswered() const {
  return remaining_.empty() ? size_ - answered_prefix_ : remaining_.size();
}

size_t ChunkState::UnansweredIndex(size_t k) const {
  return first_index() + UnansweredPosition(k);
}

std::string ChunkState::DescribeItem(size_t input_index) const {
  return DescribeTaskInput(task_name_, input_index);
}

std::string_view ChunkState::ArgsPrefix(size_t n) const {
  const std::string& a = const_cast<ChunkState*>(this)->args();
  size_t at = 0;
  for (size_t k = 0; k < n && at + 4 <= a.size(); ++k) {
    uint32_t len = 0;
    for (int i = 0; i < 4; ++i) {
      len |= static_cast<uint32_t>(static_cast<unsigned char>(a[at + i])) << (8 * i);
    }
    at = std::min(a.size(), at + 4 + len);
  }
  return std::string_view(a).substr(0, at);
}

std::string ChunkState::TakeLastItem() {
  std::string item = args().substr(last_item_ + 4);
  args().resize(last_item_);
  --size_;
  return item;
}

void ChunkState::Rebuild(size_t drop_front, size_t skip) {
  absl::StatusOr<std::vector<std::string_view>> items = SplitChunkItems(args());
  // args() was built by AddItem and earlier Rebuilds: it always splits.
  const size_t n = unanswered();
  std::vector<uint32_t> keep;
  std::string out;
  for (size_t k = drop_front; k < n && items.ok(); ++k) {
    if (k == skip) continue;
    keep.push_back(static_cast<uint32_t>(UnansweredPosition(k)));
    size_t at = BeginChunkItem(&out);
    out.append((*items)[k]);
    PatchChunkLength(&out, at);
  }
  if (skip >= n && remaining_.empty()) {
    answered_prefix_ += drop_front;  // still a suffix: no list needed
  } else {
    remaining_ = std::move(keep);
    if (remaining_.empty()) answered_prefix_ = size_;
  }
  args().swap(out);
}

absl::StatusOr<bool> ChunkState::Accept(ResultBytes payload, size_t* answered) {
  *answered = 0;
  const size_t n = unanswered();
  const std::string_view bytes = payload.view();
  absl::StatusOr<std::vector<ChunkAnswer>> answers = ParseChunkResult(bytes, n);
  if (!answers.ok()) return answers.status();
  if (outcomes_.empty()) outcomes_.resize(size_);
  const auto part = static_cast<uint32_t>(parts_.size());
  for (size_t k = 0; k < answers->size(); ++k) {
    const ChunkAnswer& a = (*answers)[k];
    Outcome& o = outcomes_[UnansweredPosition(k)];
    o.code = a.code;
    o.part = part;
    o.offset = static_cast<uint32_t>(a.bytes.data() - bytes.data());
    o.length = static_cast<uint32_t>(a.bytes.size());
  }
  *answered = answers->size();
  parts_.push_back(std::move(payload));
  if (*answered == n) {
    answered_prefix_ = size_;
    remaining_.clear();
    return true;
  }
  Rebuild(*answered, n);
  return false;
}

bool ChunkState::FailRunning(size_t k, absl::Status why) {
  const size_t n = unanswered();
  if (n == 0) return true;
  k = std::min(k, n - 1);
  if (outcomes_.empty()) outcomes_.resize(size_);
  Outcome& o = outcomes_[UnansweredPosition(k)];
  o.code = kFailedByPool;
  o.part = static_cast<uint32_t>(failures_.size());
  failures_.push_back(std::move(why));
  if (n == 1) {
    answered_prefix_ = size_;
    remaining_.clear();
    return true;
  }
  if (k == 0 && remaining_.empty()) {
    Rebuild(1, n);
  } else {
    Rebuild(0, k);
  }
  return false;
}

absl::Status ChunkState::ItemStatus(size_t i) const {
  if (i >= outcomes_.size() || outcomes_[i].code == kNoOutcome) {
    return status().ok() ? absl::InternalError("chunk item without an outcome")
                         : status();
  }
  const Outcome& o = outcomes_[i];
  if (o.code == static_cast<uint8_t>(ResultCode::kOk)) return absl::OkStatus();
  if (o.code == kFailedByPool) return failures_[o.part];
  return AnswerStatus(o.code, ItemBytes(i), DescribeItem(first_index() + i));
}

std::string_view ChunkState::ItemBytes(size_t i) const {
  if (i >= outcomes_.size()) return {};
  const Outcome& o = outcomes_[i];
  if (o.code == kNoOutcome || o.code == kFailedByPool) return {};
  return parts_[o.part].view().substr(o.offset, o.length);
}

size_t ChunkState::CountFailed(bool chunk_ok) const {
  size_t failed = 0;
  for (size_t i = 0; i < size_; ++i) {
    if (i >= outcomes_.size() || outcomes_[i].code == kNoOutcome) {
      if (!chunk_ok) ++failed;
    } else if (outcomes_[i].code != static_cast<uint8_t>(ResultCode::kOk)) {
      ++failed;
    }
  }
  return failed;
}

}  // namespace procpool::internal
