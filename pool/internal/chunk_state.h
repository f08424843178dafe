// ChunkState: several consecutive items of one map, sent to a worker as one
// call (see kChunkBit in wire.h).
//
// A map of tiny tasks spends far more on each task's bookkeeping (a shared
// state, an id, queue entries, a wake-up) than on the task. A chunk pays it
// once for up to thousands of items, while every item keeps its own outcome:
// an item that throws fails alone, and an item whose worker dies fails alone
// (or is retried) while the rest of its chunk is sent again.
//
// Lifecycle: the submitting thread adds items and queues the chunk; the I/O
// thread records answers (Accept) and crashes (FailRunning), possibly
// re-queueing the chunk with the items still unanswered, and completes it
// once every item has an outcome. Complete()/Cancel() with an error gives
// every item without an outcome that error. After Done(), any thread may
// read items' outcomes.

#ifndef PROCPOOL_POOL_INTERNAL_CHUNK_STATE_H_
#define PROCPOOL_POOL_INTERNAL_CHUNK_STATE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "pool/internal/task_state.h"
#include "pool/internal/wire.h"
#include "tasks/serialize.h"

namespace procpool::internal {

class ChunkState final : public TaskState {
 public:
  // Items are the map's inputs first_index, first_index + 1, ...; `task_name`
  // is used in error messages.
  ChunkState(uint32_t task, size_t first_index, std::string task_name)
      : TaskState(task | kChunkBit, first_index), task_name_(std::move(task_name)) {}

  ChunkState* AsChunk() override { return this; }
  // Crashes of the item at `position`: retries and poison are per item.
  std::vector<std::string>& crashes(size_t position) override {
    return item_crashes_[position];
  }

  // ---- The submitter, before the chunk is queued ----

  // Appends an item: the archive of `args...`.
  template <class... A>
  void AddItem(const A&... args) {
    last_item_ = BeginChunkItem(&this->args());
    internal::AppendArchive(&this->args(), args...);
    PatchChunkLength(&this->args(), last_item_);
    ++size_;
  }

  // Removes the last item (the chunk must have two or more) and returns
  // its archive, for AddEncodedItem on another chunk.
  std::string TakeLastItem();
  // Appends an item whose archive is already made.
  void AddEncodedItem(std::string_view archive) {
    size_t at = BeginChunkItem(&this->args());
    this->args().append(archive);
    PatchChunkLength(&this->args(), at);
    ++size_;
  }

  size_t size() const { return size_; }
  size_t first_index() const { return index(); }
  // The plugin task (without kChunkBit).
  uint32_t plugin_task() const { return task() & ~kChunkBit; }

  // ---- The I/O thread, while the chunk is dispatched ----

  // Items sent with the chunk's current args(), i.e. not answered yet.
  size_t unanswered() const;
  // Input index of the k-th unanswered item.
  size_t UnansweredIndex(size_t k) const;
  // Position in the chunk (0 .. size()-1) of the k-th unanswered item.
  size_t UnansweredPosition(size_t k) const {
    return remaining_.empty() ? answered_prefix_ + k : remaining_[k];
  }

  // Records a worker's answer to the first items still unanswered. Returns
  // true once every item has an outcome; false if some are left, in which
  // case args() holds just those, ready to be queued again. `answered` is
  // set to the number of items this answer covered. kDataLoss if the
  // payload is malformed (then nothing is recorded). A borrowed payload
  // keeps its shared memory until the chunk is destroyed.
  absl::StatusOr<bool> Accept(ResultBytes payload, size_t* answered);

  // The worker died while running the k-th unanswered item: that item's
  // outcome is `why`; the others stay unanswered. Returns true if no item
  // is left; otherwise args() holds those left.
  bool FailRunning(size_t k, absl::Status why);

  // Set by the scheduler when a worker died after running some of this
  // chunk's items, before answering, so that the culprit is unknown: from
  // then on each call carries one item, and the next such death names it.
  bool one_item_per_call = false;

  // The first `n` unanswered items' part of args(): what a call that
  // carries only those sends.
  std::string_view ArgsPrefix(size_t n) const;

  // ---- Any thread, once Done() ----

  // The item's outcome: OK (its result is ItemBytes(i)) or why it failed.
  absl::Status ItemStatus(size_t i) const;
  // The archive of item i's result, valid while the chunk lives.
  std::string_view ItemBytes(size_t i) const;
  // How many items failed.
  size_t failed_items() const { return CountFailed(status().ok()); }
  // The same, before Done(), were the chunk to complete OK or not.
  size_t CountFailed(bool chunk_ok) const;

  // "task 'name' (input #index)", as the pool describes single tasks.
  std::string DescribeItem(size_t input_index) const;

 private:
  static constexpr uint8_t kNoOutcome = 0xff;
  static constexpr uint8_t kFailedByPool = 0xfe;  // see failures_

  struct Outcome {
    uint8_t code = kNoOutcome;  // a ResultCode, or the two above
    uint32_t part = 0;          // index into parts_ (or failures_)
    uint32_t offset = 0;
    uint32_t length = 0;
  };

  // Keeps only the unanswered items in args(): those after the first
  // `drop_front` and, if `skip` < unanswered(), not the skip-th one.
  void Rebuild(size_t drop_front, size_t skip);

  const std::string task_name_;
  size_t size_ = 0;
  size_t last_item_ = 0;  // offset in args() of the last item AddItem added
  // Unanswered items: positions answered_prefix_ .. size_-1 while
  // remaining_ is empty (the usual case), else exactly remaining_.
  size_t answered_prefix_ = 0;
  std::vector<uint32_t> remaining_;
  // Inline for a chunk of one item (maps with chunksize 1), whose answer is
  // recorded by the I/O thread and dropped by the consumer: no allocation
  // made on one thread and freed on the other per item.
  absl::InlinedVector<Outcome, 1> outcomes_;
  absl::InlinedVector<ResultBytes, 1> parts_;  // the answers' payloads
  std::vector<absl::Status> failures_;    // failures the pool decided
  absl::flat_hash_map<size_t, std::vector<std::string>> item_crashes_;
};

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_CHUNK_STATE_H_
