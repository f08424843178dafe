// MapRange: the range behind ProcessPool's lazy maps (Map, TryMap,
// MapUnordered, Istarmap, TryIstarmap) and, through them, the eager ones
// (MapAll, Starmap).
//
// It reads the inputs on the consuming thread, a bounded window ahead of the
// consumer, packs consecutive items into chunks (ChunkState) and queues them
// on the pool's backend through a MapContext; it yields the items' outcomes
// in input order (or, for MapUnordered, in completion order).
//
// Not thread-safe: a range belongs to the thread iterating it, and must not
// outlive the pool that made it. Its destructor cancels the chunks it queued
// that no worker has started.

#ifndef PROCPOOL_POOL_INTERNAL_MAP_RANGE_H_
#define PROCPOOL_POOL_INTERNAL_MAP_RANGE_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "pool/future.h"
#include "pool/internal/admission.h"
#include "pool/internal/chunk_state.h"
#include "pool/internal/progress.h"
#include "pool/internal/task_state.h"
#include "pool/options.h"
#include "tasks/serialize.h"

namespace procpool {

// An element of MapUnordered (pool/pool.h).
template <class R, class ArgsTuple>
struct Unordered;

namespace internal {

class Backend;  // backend.h

// `u` as the task's argument type T: a reference when it already is one,
// else converted.
template <class T, class U>
decltype(auto) AsArg(U&& u) {
  if constexpr (std::is_same_v<std::decay_t<U>, T>) {
    return static_cast<const T&>(u);
  } else {
    return T(std::forward<U>(u));
  }
}

enum class MapMode { kOrdered, kTry, kUnordered };

// What MapAll and Starmap return when reading their input #`index` threw
// the exception being handled: kUnknown naming the index and the
// exception's type and what(), which are also its payloads (see TaskError).
absl::Status CurrentInputError(size_t index);

// kZip: one range per argument. kStar: one range of argument tuples.
enum class InputShape { kZip, kStar };

// The pool side of one map: which task it runs, with which policy, and the
// calls into the pool's backend its range makes. Made by ProcessPool
// (pool.cc). Cheap to copy; valid while the pool's backend lives.
class MapContext {
 public:
  MapContext(Backend* backend, uint32_t task, std::string task_name,
             TaskPolicy policy)
      : backend_(backend),
        task_(task),
        task_name_(std::move(task_name)),
        policy_(policy) {}
  // A map that cannot run: it yields `error` as its only element (Map
  // throws it as a TaskError) and queues nothing.
  explicit MapContext(absl::Status error) : error_(std::move(error)) {}

  uint32_t task() const { return task_; }
  const std::string& task_name() const { return task_name_; }
  const TaskPolicy& policy() const { return policy_; }
  const absl::Status& error() const { return error_; }

  // Backend::num_workers, SuggestedWindow, SuggestedChunkSize,
  // max_chunk_bytes and EnqueueMany. Never block on workers.
  int num_workers() const;
  size_t SuggestedWindow(size_t chunksize) const;
  size_t SuggestedChunkSize() const;
  size_t max_chunk_bytes() const;
  void EnqueueMany(std::vector<std::shared_ptr<TaskState>>& tasks) const;
  // Backend::admission: PoolOptions::max_pending's bound, or null.
  std::shared_ptr<Admission> admission() const;

 private:
  Backend* backend_ = nullptr;
  uint32_t task_ = 0;
  std::string task_name_;
  TaskPolicy policy_;
  absl::Status error_;
};

template <class... Views>
uint64_t KnownTotal(const std::tuple<Views...>& views) {
  if constexpr ((std::ranges::sized_range<const Views> && ...)) {
    uint64_t total = UINT64_MAX;
    std::apply(
        [&](const auto&... v) {
          ((total = std::min<uint64_t>(total, std::ranges::size(v))), ...);
        },
        views);
    return total;
  } else {
    return 0;
  }
}

// The size of a map's next automatic chunk, from the full size `full`,
// after `read` items of an input of `total` (0: unknown) over `workers`.
// Chunks start at an eighth of the full size and grow with what was read
// (to a worker's share of it), so the first results come early; near the
// end of an input of known length they shrink with what is left to read
// (to half a worker's share of it), so the workers finish together rather
// than one waiting on another's last big chunk. At least 1, at most `full`.
size_t MapChunkSize(size_t full, uint64_t read, uint64_t total, size_t workers);

// The range behind Map, TryMap, MapUnordered and Istarmap.
template <MapMode Mode, InputShape Shape, class R, class ArgsTuple,
          class... Views>
class MapRange : public std::ranges::view_base {
 public:
  using Item = std::conditional_t<
      Mode == MapMode::kOrdered, R,
      std::conditional_t<Mode == MapMode::kTry, absl::StatusOr<R>,
                         Unordered<R, ArgsTuple>>>;

  MapRange(MapContext context, MapOptions options, Views... views)
      : context_(std::move(context)),
        options_(std::move(options)),
        deadline_(options_.timeout == absl::InfiniteDuration()
                      ? absl::InfiniteFuture()
                      : absl::Now() + options_.timeout),
        views_(std::move(views)...) {}

  MapRange(MapRange&&) = default;
  MapRange& operator=(MapRange&&) = default;

  ~MapRange() {
    CancelOutstanding();
    // Slots taken for items not read, if reading them threw out of Fill().
    if (admission_ != nullptr && reserved_ > 0) admission_->Release(reserved_);
  }

  class iterator {
   public:
    using value_type = Item;
    using difference_type = std::ptrdiff_t;
    using reference =
        std::conditional_t<Mode == MapMode::kOrdered, const R&, const Item&>;

    iterator() = default;
    explicit iterator(MapRange* r) : r_(r) { r_->Advance(); }

    reference operator*() const { return r_->Current(); }
    iterator& operator++() {
      r_->Advance();
      return *this;
    }
    void operator++(int) { r_->Advance(); }
    friend bool operator==(const iterator& it, std::default_sentinel_t) {
      return it.AtEnd();
    }

   private:
    bool AtEnd() const { return r_->finished_; }
    MapRange* r_ = nullptr;
  };

  // Call once: the range is an input range.
  iterator begin() {
    if (!context_.error().ok()) {
      inputs_done_ = true;  // nothing to read; Finish() reports the error
      return iterator(this);
    }
    admission_ = context_.admission();
    try {
      std::apply([this](auto&... v) { its_.emplace(std::ranges::begin(v)...); },
                 views_);
      total_ = KnownTotal(views_);
    } catch (...) {
      StopReading(std::current_exception());
    }
    if (options_.progress || options_.on_progress) {
      progress_ = std::make_unique<ProgressReporter>(total_, options_.progress,
                                                     options_.progress_fd,
                                                     options_.on_progress);
    }
    return iterator(this);
  }
  std::default_sentinel_t end() { return {}; }

 private:
  using Its = std::tuple<std::ranges::iterator_t<Views>...>;
  using Chunk = ChunkState;

  // A chunk in the ordered window and how many of its items were consumed.
  struct Slot {
    std::shared_ptr<Chunk> chunk;
    size_t next = 0;
  };

  // A chunk stops growing at this many bytes of arguments.
  static constexpr size_t kChunkBytes = size_t{64} << 10;

  bool AnyAtEnd() {
    return std::apply(
        [this](auto&... it) {
          return std::apply(
              [&](auto&... v) { return ((it == std::ranges::end(v)) || ...); },
              views_);
        },
        *its_);
  }
  bool AllAtEnd() {
    return std::apply(
        [this](auto&... it) {
          return std::apply(
              [&](auto&... v) { return ((it == std::ranges::end(v)) && ...); },
              views_);
        },
        *its_);
  }

  size_t Window() const {
    if (options_.window > 0) return options_.window;
    return context_.SuggestedWindow(static_cast<size_t>(std::max(0, options_.chunksize)));
  }

  // Items per chunk: MapOptions::chunksize, else about
  // Scheduler::kMapChunkNs of work as measured so far (1 until something
  // was measured), small enough that every worker gets a share of the
  // window and of a known input. NextChunkSize starts and ends smaller.
  size_t ChunkSize(size_t window) const {
    if (options_.chunksize > 0) return static_cast<size_t>(options_.chunksize);
    if (context_.policy().timeout != absl::InfiniteDuration()) {
      return 1;  // per-item deadlines
    }
    const size_t workers =
        static_cast<size_t>(std::max(1, context_.num_workers()));
    size_t c = context_.SuggestedChunkSize();
    c = std::min(c, std::max<size_t>(1, window / (2 * workers)));
    if (total_ > 0)
      c = std::min(c, std::max<size_t>(1, total_ / (4 * workers)));
    return c;
  }

  size_t NextChunkSize(size_t chunk_size) const {
    if (options_.chunksize > 0) return chunk_size;
    return MapChunkSize(chunk_size, next_index_, total_,
                        static_cast<size_t>(std::max(1, context_.num_workers())));
  }

  // Reading the inputs may throw: comparing an iterator with its end
  // (HasNext), dereferencing, converting to the argument types or
  // incrementing (ReadArgs). Then reading stops there, as at the end of the
  // inputs, and the consumer gets the items before that one and then the
  // exception (see Finish).
  void StopReading(std::exception_ptr error) {
    input_error_ = std::move(error);
    inputs_done_ = true;
  }

  // Whether another item can be read.
  bool HasNext() {
    if (inputs_done_) return false;
    try {
      if (!AnyAtEnd()) return true;
      if (options_.strict && !AllAtEnd()) length_mismatch_ = true;
      inputs_done_ = true;
    } catch (...) {
      StopReading(std::current_exception());
    }
    return false;
  }

  // The next item's arguments, or nullopt when reading them threw.
  std::optional<ArgsTuple> TryReadArgs() {
    try {
      return ReadArgs();
    } catch (...) {
      StopReading(std::current_exception());
      return std::nullopt;
    }
  }

  ArgsTuple ReadArgs() {
    if constexpr (Shape == InputShape::kZip) {
      ArgsTuple args =
          std::apply([](auto&... it) { return ArgsTuple(*it...); }, *its_);
      std::apply([](auto&... it) { (++it, ...); }, *its_);
      return args;
    } else {
      auto& it = std::get<0>(*its_);
      ArgsTuple args = std::apply(
          [](auto&&... a) {
            return ArgsTuple(std::forward<decltype(a)>(a)...);
          },
          *it);
      ++it;
      return args;
    }
  }

  // Reads inputs into chunks until `Window()` items are outstanding or
  // inputs run out (or reading them throws). Without `may_wait`, it never
  // waits for a slot of PoolOptions::max_pending.
  void Fill(bool may_wait = true) {
    if (inputs_done_ || expired_) return;
    // Called for every item: the quick answer while no chunk fits yet.
    if (Outstanding() > refill_below_) return;
    // Under PoolOptions::max_pending, neither the window nor a chunk is
    // larger than the bound (a chunk takes a slot per item).
    const size_t bound = admission_ ? admission_->limit() : SIZE_MAX;
    const size_t window = std::min(Window(), bound);
    const size_t chunk_size = std::min(ChunkSize(window), bound);
    refill_below_ = window > chunk_size ? window - chunk_size : 0;
    const size_t max_bytes = context_.max_chunk_bytes();
    std::vector<std::shared_ptr<TaskState>> batch;
    std::shared_ptr<Chunk> chunk;  // being filled
    // Whole chunks only: topping the window up item by item would make
    // chunks of one.
    while (Outstanding() + chunk_size <= window || Outstanding() == 0 ||
           chunk != nullptr) {
      if (chunk == nullptr) {
        if (!HasNext()) break;
        chunk = NewChunk(next_index_);
      }
      // An item that did not fit, for the next chunk (its archive may be
      // empty: an argument of an empty struct encodes to no bytes).
      std::optional<std::string> carry;
      bool out_of_slots = false;
      const size_t this_chunk = NextChunkSize(chunk_size);
      while (chunk->size() < this_chunk && HasNext()) {
        if (!Reserve(this_chunk - chunk->size(),
                     !may_wait || Outstanding() > 0 || chunk->size() > 0)) {
          out_of_slots = true;
          break;
        }
        std::optional<ArgsTuple> args = TryReadArgs();
        if (!args.has_value()) break;
        if (admission_ != nullptr) --reserved_;
        std::apply([&](const auto&... a) { chunk->AddItem(a...); }, *args);
        if constexpr (Mode == MapMode::kUnordered) {
          unordered_.emplace(next_index_,
                             std::make_pair(chunk, std::move(*args)));
        }
        ++next_index_;
        if (chunk->args().size() >= max_bytes) {
          if (chunk->args().size() > max_bytes && chunk->size() > 1) {
            carry = chunk->TakeLastItem();
          }
          break;
        }
      }
      // Empty when reading its first item threw.
      if (chunk->size() > 0) Seal(chunk, batch);
      chunk = nullptr;
      if (carry.has_value()) {
        chunk = NewChunk(next_index_ - 1);
        chunk->AddEncodedItem(*carry);
        if constexpr (Mode == MapMode::kUnordered) {
          unordered_[next_index_ - 1].first = chunk;
        }
        // The carried item is read already. With the window full, send it
        // on its own: filling its chunk would read past the window, and
        // when every chunk overflows (items near max_chunk_bytes) the whole
        // input would be read ahead.
        if (Outstanding() + chunk_size > window) {
          Seal(chunk, batch);
          chunk = nullptr;
        }
      }
      if (out_of_slots) break;
    }
    if (!batch.empty()) context_.EnqueueMany(batch);
    if (reserved_ > 0) admission_->Release(std::exchange(reserved_, 0));
  }

  // Takes slots of PoolOptions::max_pending for up to `want` more items
  // (at least one) unless some are left from the last call. While the map
  // `holding` items the consumer has not taken, it does not wait: those
  // resolve (and free their slots) by themselves, and the consumer comes
  // back here. Holding nothing, it waits up to the map's timeout, so it
  // never waits on itself and never fails an item because of the bound.
  // False when no slot came; then, if it waited, the map's timeout passed.
  bool Reserve(size_t want, bool holding) {
    if (admission_ == nullptr || reserved_ > 0) return true;
    reserved_ = admission_->Acquire(want, holding ? absl::InfinitePast() : deadline_);
    if (reserved_ > 0) return true;
    if (!holding) {
      waited_past_deadline_ = true;
      Expire();
    }
    return false;
  }

  std::shared_ptr<Chunk> NewChunk(size_t first_index) {
    auto chunk = std::make_shared<Chunk>(context_.task(), first_index,
                                         context_.task_name());
    chunk->mutable_policy() = context_.policy();
    return chunk;
  }

  // A chunk is full: hook it to the window and the progress counters and
  // add it to the batch to queue.
  void Seal(std::shared_ptr<Chunk>& chunk,
            std::vector<std::shared_ptr<TaskState>>& batch) {
    const size_t n = chunk->size();
    Chunk* raw = chunk.get();  // the callbacks live in the chunk itself
    if (admission_ != nullptr) {
      // Its slots free when it resolves, consumed or not.
      chunk->OnDone([a = admission_, n] { a->Release(n); });
    }
    if (progress_ != nullptr) {
      chunk->OnDone([c = progress_->shared_counters(), raw, n] {
        c->done.fetch_add(n, std::memory_order_relaxed);
        c->failed.fetch_add(raw->failed_items(), std::memory_order_relaxed);
      });
    }
    if constexpr (Mode == MapMode::kUnordered) {
      chunk->OnDone([q = queue_, first = raw->first_index(), n] {
        q->PushRange(first, n);
      });
    } else {
      window_.push_back(Slot{chunk});
      outstanding_ += n;
    }
    batch.push_back(chunk);
  }

  size_t Outstanding() const {
    if constexpr (Mode == MapMode::kUnordered) {
      return unordered_.size();
    } else {
      return outstanding_;
    }
  }

  absl::Status DeadlineError() const {
    return absl::DeadlineExceededError(absl::StrCat(
        "the map's timeout of ", absl::FormatDuration(options_.timeout),
        " passed before this item finished"));
  }

  // Item `i` of a done chunk: its value, or why it has none.
  static absl::StatusOr<R> ItemResult(const Chunk& chunk, size_t i) {
    absl::Status status = chunk.ItemStatus(i);
    if (!status.ok()) return status;
    try {
      return internal::DecodeArchive<R>(chunk.ItemBytes(i));
    } catch (const std::exception& e) {
      return absl::DataLossError(
          absl::StrCat(chunk.DescribeItem(chunk.first_index() + i),
                       ": the result does not decode: ", e.what()));
    }
  }

  // Cancels what this range queued and no worker has started; running
  // chunks finish and their results are dropped (stopping a worker for a
  // read-ahead item the caller no longer wants would cost a process).
  void CancelOutstanding() {
    const absl::Status why =
        absl::CancelledError("the map was abandoned before this item ran");
    for (Slot& s : window_) {
      if (s.chunk != nullptr) s.chunk->Cancel(why);
    }
    for (auto& [i, entry] : unordered_) {
      if (entry.first != nullptr) entry.first->Cancel(why);
    }
  }

  void Advance() {
    Fill();
    if (progress_ != nullptr) progress_->Tick();
    if constexpr (Mode == MapMode::kUnordered) {
      if (unordered_.empty()) return Finish();
      while (true) {
        std::optional<size_t> i = queue_->Pop(deadline_);
        if (!i) {
          // Timed out: report the oldest outstanding item as expired.
          Expire();
          auto node = unordered_.extract(unordered_.begin());
          current_.emplace(Item{node.key(), std::move(node.mapped().second),
                                absl::StatusOr<R>(DeadlineError())});
          break;
        }
        auto node = unordered_.extract(*i);
        if (node.empty()) continue;  // already reported as expired
        auto& [chunk, args] = node.mapped();
        current_.emplace(Item{*i, std::move(args),
                              ItemResult(*chunk, *i - chunk->first_index())});
        if (progress_ != nullptr) progress_->Consumed(!current_->result.ok());
        break;
      }
    } else {
      if (window_.empty()) return Finish();
      Slot& slot = window_.front();
      const size_t i = slot.next++;
      // No shared_ptr copy per item (an atomic increment and decrement):
      // the slot holds the chunk until its last item, then `last` does.
      Chunk* chunk = slot.chunk.get();
      std::shared_ptr<Chunk> last;
      if (slot.next == chunk->size()) {
        last = std::move(slot.chunk);
        window_.pop_front();
      }
      --outstanding_;
      if (!chunk->Done() && !chunk->WaitFor(deadline_ - absl::Now())) {
        Expire();
        if constexpr (Mode == MapMode::kOrdered) {
          finished_ = true;
          throw TaskError(DeadlineError());
        } else {
          result_ = DeadlineError();
          return;
        }
      }
      result_ = ItemResult(*chunk, i);
      if (progress_ != nullptr) progress_->Consumed(!result_.ok());
    }
    // Keep the workers busy while the caller looks at this item (without
    // waiting for a slot: the caller has its item now).
    Fill(/*may_wait=*/false);
  }

  // The map's timeout passed: stop reading inputs and cancel what is queued.
  void Expire() {
    expired_ = true;
    inputs_done_ = true;
    CancelOutstanding();
  }

  void Finish() {
    if (progress_ != nullptr) progress_.reset();  // final report
    if (input_error_ != nullptr) {
      // Every item before the one whose reading threw was consumed.
      finished_ = true;
      std::rethrow_exception(std::exchange(input_error_, nullptr));
    }
    // An error reported after the items, once: why the map could not run
    // at all (then there were no items), or the strict length check.
    absl::Status s;
    if (!final_reported_) {
      if (!context_.error().ok()) {
        s = context_.error();
      } else if (length_mismatch_) {
        s = absl::InvalidArgumentError(
            "Map(strict): the input ranges have different lengths");
      } else if (waited_past_deadline_) {
        s = absl::DeadlineExceededError(absl::StrCat(
            "the map's timeout of ", absl::FormatDuration(options_.timeout),
            " passed while it waited for a slot of PoolOptions::max_pending (",
            admission_->limit(), ") to read input #", next_index_));
      }
    }
    if (!s.ok()) {
      final_reported_ = true;
      if constexpr (Mode == MapMode::kOrdered) {
        finished_ = true;
        throw TaskError(s);
      } else if constexpr (Mode == MapMode::kTry) {
        result_ = s;
        return;
      } else {
        current_.emplace(Item{next_index_, ArgsTuple{}, s});
        return;
      }
    }
    finished_ = true;
  }

  decltype(auto) Current() const {
    if constexpr (Mode == MapMode::kOrdered) {
      if (!result_.ok()) throw TaskError(result_.status());
      return static_cast<const R&>(*result_);
    } else if constexpr (Mode == MapMode::kTry) {
      return static_cast<const Item&>(result_);
    } else {
      return static_cast<const Item&>(*current_);
    }
  }

  MapContext context_;
  MapOptions options_;
  absl::Time deadline_;
  std::tuple<Views...> views_;
  std::optional<Its> its_;
  uint64_t total_ = 0;  // input length if known, else 0
  bool inputs_done_ = false;
  // What reading input #next_index_ threw, until Finish rethrows it.
  std::exception_ptr input_error_;
  bool expired_ = false;
  bool length_mismatch_ = false;
  bool final_reported_ = false;
  bool finished_ = false;
  size_t next_index_ = 0;
  // Fill() does nothing while more items than this are outstanding.
  size_t refill_below_ = SIZE_MAX;
  // PoolOptions::max_pending's bound (null: none), slots taken by this
  // Fill() for items not read yet, and whether the map's timeout passed
  // while it waited for one.
  std::shared_ptr<Admission> admission_;
  size_t reserved_ = 0;
  bool waited_past_deadline_ = false;
  // Map and TryMap: chunks in input order, and their items not yet consumed.
  std::deque<Slot> window_;
  size_t outstanding_ = 0;
  absl::StatusOr<R> result_{absl::UnknownError("no item yet")};
  std::unique_ptr<ProgressReporter> progress_;
  // MapUnordered: outstanding items by input index, and completion order.
  std::optional<Item> current_;
  absl::flat_hash_map<size_t, std::pair<std::shared_ptr<Chunk>, ArgsTuple>>
      unordered_;
  std::shared_ptr<CompletionQueue> queue_ = std::make_shared<CompletionQueue>();
};

}  // namespace internal
}  // namespace procpool

#endif  // PROCPOOL_POOL_INTERNAL_MAP_RANGE_H_
