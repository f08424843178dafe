// ProcessPool: run plugin tasks in worker processes.
//
//   procpool::PoolOptions opts;
//   opts.max_workers = 4;
//   opts.plugins = {"plugins/math/libmath.so"};
//   absl::StatusOr<procpool::ProcessPool> pool = procpool::ProcessPool::Create(opts);
//   if (!pool.ok()) return pool.status();
//   auto add = pool->Task<int(int, int)>("add");   // checked against the plugin
//   if (!add.ok()) return add.status();
//
//   procpool::Future<int> f = pool->Submit(*add, 1, 2);
//   int three = f.Get();
//
//   for (int sum : pool->Map(*add, xs, ys)) { ... }   // lazy, ordered, no zip
//
// Workers are separate processes spawned from the procpool_worker executable;
// each loads the plugins. A task that crashes its worker fails that task alone
// (kAborted, naming the signal or exit code, the task and its input index);
// the pool re-queues the tasks that were waiting behind it, starts a
// replacement worker and goes on. Every future resolves exactly once.
//
// Thread safety: all methods may be called from any number of threads at
// once, except that a pool must not be moved or destroyed while another
// thread uses it. Ranges returned by Map/TryMap/MapUnordered belong to the
// thread iterating them and must not outlive the pool.

#ifndef PROCPOOL_POOL_POOL_H_
#define PROCPOOL_POOL_POOL_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "pool/future.h"
#include "pool/internal/pool_core.h"
#include "pool/internal/status_macros.h"
#include "pool/internal/task_state.h"
#include "pool/options.h"
#include "tasks/serialize.h"
#include "tasks/signature.h"
#include "tasks/task.h"

namespace procpool {

class ProcessPool;

// A task checked against the pool's plugins: its name exists and its
// signature matches `Sig`. Cheap to copy. Valid for the pool that made it.
template <class Sig>
class TaskHandle;

template <class R, class... Args>
class TaskHandle<R(Args...)> {
 public:
  using Signature = R(Args...);
  using Result = std::decay_t<R>;
  using ArgsTuple = std::tuple<std::decay_t<Args>...>;

  const std::string& name() const { return name_; }

 private:
  friend class ProcessPool;
  TaskHandle(std::string name, uint32_t index)
      : name_(std::move(name)), index_(index) {}
  std::string name_;
  uint32_t index_;
};

// One description per task the pool's plugins register.
struct TaskDescription {
  std::string name;
  std::string plugin;     // path of the shared object
  std::string signature;  // e.g. "int(int, int)"
};

struct MapOptions {
  // How many items Map reads ahead of the item being consumed (and so how
  // many run at once). 0: automatic, from the measured task duration — a
  // few per worker for slow tasks, up to thousands for tiny ones.
  size_t window = 0;
  // With unequal input lengths, Map stops at the shortest. With `strict`,
  // it then reports the mismatch: iteration throws TaskError
  // (kInvalidArgument), and TryMap yields that error as its last element.
  bool strict = false;
};

// An element of MapUnordered: which input it was, its arguments, and its
// outcome.
template <class R, class ArgsTuple>
struct Unordered {
  size_t index;
  ArgsTuple args;
  absl::StatusOr<R> result;
};

namespace pool_internal {

template <class T, class U>
decltype(auto) AsArg(U&& u) {
  if constexpr (std::is_same_v<std::decay_t<U>, T>) {
    return static_cast<const T&>(u);
  } else {
    return T(std::forward<U>(u));
  }
}

enum class MapMode { kOrdered, kTry, kUnordered };

template <MapMode Mode, class R, class ArgsTuple, class... Views>
class MapRange;

}  // namespace pool_internal

class ProcessPool {
 public:
  // Starts `options.max_workers` workers and waits until each has loaded
  // the plugins (at most options.start_timeout). Blocks.
  // Errors name the file: kNotFound (plugin or worker executable missing),
  // kPermissionDenied (worker not executable), kInvalidArgument (not a
  // shared object, or no procpool entry point), kFailedPrecondition (plugin
  // built for another ABI version), kAlreadyExists (two tasks of one name),
  // kDeadlineExceeded (workers too slow to start).
  static absl::StatusOr<ProcessPool> Create(PoolOptions options);

  ProcessPool(ProcessPool&&) noexcept;
  ProcessPool& operator=(ProcessPool&&) noexcept;
  // Cancels queued tasks, stops the workers (SIGTERM, then SIGKILL after a
  // short grace period; tasks still running fail with kCancelled), reaps
  // them and returns. Never waits for a running task: call Shutdown() first
  // to let queued work finish.
  ~ProcessPool();

  // The task `name` with signature `Sig`. Never blocks.
  // kNotFound: no plugin registers `name` (the message lists the tasks).
  // kInvalidArgument: the plugin's signature differs (both are shown).
  template <class Sig>
  absl::StatusOr<TaskHandle<Sig>> Task(std::string_view name) const {
    PROCPOOL_ASSIGN_OR_RETURN(
        uint32_t index,
        core_->FindTask(absl::string_view(name.data(), name.size()),
                        Signature<Sig>::Fingerprint(), Signature<Sig>::Readable()));
    return TaskHandle<Sig>(std::string(name), index);
  }
  template <class Sig>
  absl::StatusOr<TaskHandle<Sig>> Task(TaskRef<Sig> ref) const {
    return Task<Sig>(ref.name());
  }

  // Queues one call of `task` with `args` (converted to the task's argument
  // types and serialized here, on the calling thread). Never blocks on
  // workers and never throws for pool reasons: a task submitted after
  // Shutdown() resolves with kFailedPrecondition.
  template <class R, class... Args, class... U>
  Future<std::decay_t<R>> Submit(const TaskHandle<R(Args...)>& task, U&&... args) {
    static_assert(sizeof...(U) == sizeof...(Args),
                  "Submit: wrong number of arguments for this task");
    auto state = MakeState<R, Args...>(task.index_, core_->NextSubmissionIndex(),
                                       std::forward<U>(args)...);
    core_->Enqueue(state);
    return Future<std::decay_t<R>>(std::move(state));
  }

  // As above, looking the task up by name each time. A lookup failure
  // resolves the future with that error (kNotFound, kInvalidArgument).
  template <class R, class... Args, class... U>
  Future<std::decay_t<R>> Submit(TaskRef<R(Args...)> ref, U&&... args) {
    absl::StatusOr<TaskHandle<R(Args...)>> task = Task(ref);
    if (!task.ok()) {
      auto state = std::make_shared<internal::TypedTaskState<std::decay_t<R>>>(
          0, core_->NextSubmissionIndex());
      state->Cancel(task.status());
      return Future<std::decay_t<R>>(std::move(state));
    }
    return Submit(*task, std::forward<U>(args)...);
  }

  // Applies `task` to the elements of `ranges` taken in parallel (the i-th
  // call gets the i-th element of each range; no zip), stopping at the
  // shortest range. Lazy on both ends: it reads inputs only a bounded window
  // ahead of the consumer, so an unbounded input works with flat memory, and
  // yields results in input order as they arrive.
  //
  // Returns an input range (range-for, std::views) of `const R&`. Advancing
  // blocks until the next result is in; an item whose task failed throws
  // TaskError when dereferenced (use TryMap to get a Status instead). The
  // ranges are read on the consuming thread. Abandoning the range cancels
  // what it queued and has not started.
  template <class R, class... Args, class... Ranges>
  auto Map(const TaskHandle<R(Args...)>& task, Ranges&&... ranges) {
    return Map(MapOptions{}, task, std::forward<Ranges>(ranges)...);
  }
  template <class R, class... Args, class... Ranges>
  auto Map(const MapOptions& options, const TaskHandle<R(Args...)>& task,
           Ranges&&... ranges) {
    return MakeRange<pool_internal::MapMode::kOrdered>(options, task,
                                                       std::forward<Ranges>(ranges)...);
  }

  // Like Map, but yields absl::StatusOr<R> per item and never throws for a
  // failed item: the run goes on past bad records.
  template <class R, class... Args, class... Ranges>
  auto TryMap(const TaskHandle<R(Args...)>& task, Ranges&&... ranges) {
    return TryMap(MapOptions{}, task, std::forward<Ranges>(ranges)...);
  }
  template <class R, class... Args, class... Ranges>
  auto TryMap(const MapOptions& options, const TaskHandle<R(Args...)>& task,
              Ranges&&... ranges) {
    return MakeRange<pool_internal::MapMode::kTry>(options, task,
                                                   std::forward<Ranges>(ranges)...);
  }

  // Like TryMap, but yields items in completion order, each an
  // Unordered<R, ArgsTuple> carrying its input index and its arguments (so
  // no future-to-input map is needed). Python's imap_unordered, zip-free.
  template <class R, class... Args, class... Ranges>
  auto MapUnordered(const TaskHandle<R(Args...)>& task, Ranges&&... ranges) {
    return MapUnordered(MapOptions{}, task, std::forward<Ranges>(ranges)...);
  }
  template <class R, class... Args, class... Ranges>
  auto MapUnordered(const MapOptions& options, const TaskHandle<R(Args...)>& task,
                    Ranges&&... ranges) {
    return MakeRange<pool_internal::MapMode::kUnordered>(
        options, task, std::forward<Ranges>(ranges)...);
  }

  // Stops accepting tasks (later submissions resolve with
  // kFailedPrecondition). With `cancel_pending`, tasks not yet sent to a
  // worker resolve with kCancelled. With `wait`, blocks until every
  // remaining task has finished and the workers have exited; without it,
  // returns at once and the remaining work finishes in the background.
  void Shutdown(bool wait = true, bool cancel_pending = false) {
    core_->Shutdown(wait, cancel_pending);
  }

  int num_workers() const { return core_->num_workers(); }

  // Process ids of the live worker processes, for diagnostics (and for
  // demonstrating what happens when one is killed). Never blocks on workers.
  std::vector<int> WorkerPids() const { return core_->WorkerPids(); }

  // The tasks the plugins register, in load order.
  std::vector<TaskDescription> Tasks() const;

  // For the implementation of the ranges.
  internal::PoolCore& core_for_internal_use() const { return *core_; }

  template <class R, class... Args, class... U>
  std::shared_ptr<internal::TypedTaskState<std::decay_t<R>>> MakeState(
      uint32_t task, size_t index, U&&... args) {
    auto state =
        std::make_shared<internal::TypedTaskState<std::decay_t<R>>>(task, index);
    serialize_internal::AppendArchive(
        &state->args(), pool_internal::AsArg<std::decay_t<Args>>(
                            std::forward<U>(args))...);
    return state;
  }

 private:
  explicit ProcessPool(std::unique_ptr<internal::PoolCore> core)
      : core_(std::move(core)) {}

  template <pool_internal::MapMode Mode, class R, class... Args, class... Ranges>
  auto MakeRange(const MapOptions& options, const TaskHandle<R(Args...)>& task,
                 Ranges&&... ranges) {
    static_assert(sizeof...(Ranges) == sizeof...(Args),
                  "Map: pass one range per task argument");
    return pool_internal::MapRange<Mode, std::decay_t<R>,
                                   std::tuple<std::decay_t<Args>...>,
                                   std::views::all_t<Ranges>...>(
        this, task.index_, options, std::views::all(std::forward<Ranges>(ranges))...);
  }

  std::unique_ptr<internal::PoolCore> core_;
};

namespace pool_internal {

// The range behind Map, TryMap and MapUnordered.
template <MapMode Mode, class R, class ArgsTuple, class... Views>
class MapRange : public std::ranges::view_base {
 public:
  using Item = std::conditional_t<
      Mode == MapMode::kOrdered, R,
      std::conditional_t<Mode == MapMode::kTry, absl::StatusOr<R>,
                          Unordered<R, ArgsTuple>>>;

  MapRange(ProcessPool* pool, uint32_t task, MapOptions options, Views... views)
      : pool_(pool), task_(task), options_(options), views_(std::move(views)...) {}

  MapRange(MapRange&&) = default;
  MapRange& operator=(MapRange&&) = default;

  ~MapRange() {
    for (auto& f : window_) {
      if (f.valid()) f.Cancel();
    }
    for (auto& [i, entry] : unordered_) {
      if (entry.first.valid()) entry.first.Cancel();
    }
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
    std::apply([this](auto&... v) { its_.emplace(std::ranges::begin(v)...); },
               views_);
    return iterator(this);
  }
  std::default_sentinel_t end() { return {}; }

 private:
  using Its = std::tuple<std::ranges::iterator_t<Views>...>;

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
    return pool_->core_for_internal_use().SuggestedWindow();
  }

  // Reads inputs until `Window()` tasks are outstanding or inputs run out.
  void Fill() {
    if (inputs_done_) return;
    size_t window = Window();
    std::vector<std::shared_ptr<internal::TaskState>> batch;
    while (Outstanding() + batch.size() < window) {
      if (AnyAtEnd()) {
        inputs_done_ = true;
        if (options_.strict && !AllAtEnd()) length_mismatch_ = true;
        break;
      }
      ArgsTuple args = std::apply(
          [](auto&... it) { return ArgsTuple(*it...); }, *its_);
      std::apply([](auto&... it) { (++it, ...); }, *its_);
      auto state = std::make_shared<internal::TypedTaskState<R>>(task_, next_index_);
      std::apply(
          [&](const auto&... a) {
            serialize_internal::AppendArchive(&state->args(), a...);
          },
          args);
      Future<R> f(state);
      if constexpr (Mode == MapMode::kUnordered) {
        f.AddDoneCallback(
            [q = queue_, i = next_index_](const Future<R>&) { q->Push(i, false); });
        unordered_.emplace(next_index_, std::make_pair(f, std::move(args)));
      } else {
        window_.push_back(std::move(f));
      }
      ++next_index_;
      batch.push_back(std::move(state));
    }
    if (!batch.empty()) pool_->core_for_internal_use().EnqueueMany(batch);
  }

  size_t Outstanding() const {
    if constexpr (Mode == MapMode::kUnordered) {
      return unordered_.size();
    } else {
      return window_.size();
    }
  }

  void Advance() {
    Fill();
    if constexpr (Mode == MapMode::kUnordered) {
      if (unordered_.empty()) return Finish();
      std::optional<size_t> i = queue_->Pop(absl::InfiniteFuture());
      auto node = unordered_.extract(*i);
      auto& [f, args] = node.mapped();
      current_.emplace(Item{*i, std::move(args), f.Result()});
    } else {
      if (window_.empty()) return Finish();
      current_future_ = std::move(window_.front());
      window_.pop_front();
      if constexpr (Mode == MapMode::kTry) current_.emplace(current_future_.Result());
    }
    Fill();  // keep the workers busy while the caller looks at this item
  }

  void Finish() {
    if (length_mismatch_ && !mismatch_reported_) {
      mismatch_reported_ = true;
      absl::Status s = absl::InvalidArgumentError(
          "Map(strict): the input ranges have different lengths");
      if constexpr (Mode == MapMode::kOrdered) {
        finished_ = true;
        throw TaskError(s);
      } else if constexpr (Mode == MapMode::kTry) {
        current_.emplace(s);
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
      return current_future_.Get();
    } else {
      return static_cast<const Item&>(*current_);
    }
  }

  ProcessPool* pool_;
  uint32_t task_;
  MapOptions options_;
  std::tuple<Views...> views_;
  std::optional<Its> its_;
  bool inputs_done_ = false;
  bool length_mismatch_ = false;
  bool mismatch_reported_ = false;
  bool finished_ = false;
  size_t next_index_ = 0;
  std::deque<Future<R>> window_;
  Future<R> current_future_;
  std::optional<Item> current_;
  // MapUnordered: outstanding items by input index, and completion order.
  absl::flat_hash_map<size_t, std::pair<Future<R>, ArgsTuple>> unordered_;
  std::shared_ptr<internal::CompletionQueue> queue_ =
      std::make_shared<internal::CompletionQueue>();
};

}  // namespace pool_internal
}  // namespace procpool

#endif  // PROCPOOL_POOL_POOL_H_
