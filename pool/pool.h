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
#include <functional>
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
#include "pool/internal/backend.h"
#include "pool/internal/chunk_state.h"
#include "pool/internal/progress.h"
#include "pool/internal/status_macros.h"
#include "pool/internal/task_state.h"
#include "pool/options.h"
#include "pool/stats.h"
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

// Per-call policy for Submit / Apply / ApplyAsync.
struct SubmitOptions {
  // Longest the task may run once a worker starts it. When it runs out the
  // future fails with kDeadlineExceeded at once and the worker is stopped
  // (SIGTERM, then SIGKILL after PoolOptions::kill_grace) and replaced.
  // Infinite: PoolOptions::task_timeout.
  absl::Duration timeout = absl::InfiniteDuration();
  // Re-run the task on another worker when its worker dies under it, up to
  // this many times; after retries + 1 deaths the task fails as a "poison
  // task" with every crash's reason. -1: PoolOptions::retries.
  int retries = -1;
};

struct MapOptions {
  // How many items Map reads ahead of the item being consumed (and so how
  // many run at once). 0: automatic, from the measured task duration — a
  // few per worker for slow tasks, up to thousands for tiny ones.
  size_t window = 0;
  // Items sent to a worker as one call (Python's chunksize). 0: automatic,
  // about a millisecond of work at the measured task duration (one item
  // per call with a task_timeout, so the deadline stays per item).
  int chunksize = 0;
  // With unequal input lengths, Map stops at the shortest. With `strict`,
  // it then reports the mismatch: iteration throws TaskError
  // (kInvalidArgument), and TryMap yields that error as its last element.
  bool strict = false;
  // Like Python's Executor.map(timeout=...): counted from the call; an item
  // not finished by then throws TaskError(kDeadlineExceeded) from Map (TryMap
  // and MapUnordered yield that status), and what is still queued is
  // cancelled.
  absl::Duration timeout = absl::InfiniteDuration();
  // Per-item policy, as in SubmitOptions.
  absl::Duration task_timeout = absl::InfiniteDuration();
  int retries = -1;
  // Draw a progress bar on `progress_fd` (stderr) while iterating, if it is
  // a terminal: done/total (total when every input range has a size), rate,
  // ETA, failures.
  bool progress = false;
  int progress_fd = 2;
  // Called on the iterating thread about every 100 ms and once at the end,
  // for programs that draw their own progress.
  std::function<void(const Progress&)> on_progress;
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

// kZip: one range per argument. kStar: one range of argument tuples.
enum class InputShape { kZip, kStar };

template <MapMode Mode, InputShape Shape, class R, class ArgsTuple, class... Views>
class MapRange;

inline internal::TaskPolicy PolicyFor(const internal::TaskPolicy& defaults,
                                      absl::Duration timeout, int retries) {
  internal::TaskPolicy p = defaults;
  if (timeout != absl::InfiniteDuration()) p.timeout = timeout;
  if (retries >= 0) p.retries = retries;
  return p;
}

}  // namespace pool_internal

class ProcessPool {
 public:
  // Starts `options.max_workers` workers and waits until each has loaded
  // the plugins (and run the initializer) — at most options.start_timeout.
  // Blocks. Errors name the file: kNotFound (plugin or worker executable
  // missing), kPermissionDenied (worker not executable), kInvalidArgument
  // (not a shared object, or no procpool entry point), kFailedPrecondition
  // (plugin built for another ABI version), kAlreadyExists (two tasks of one
  // name), kUnknown (the initializer threw), kDeadlineExceeded (workers too
  // slow to start).
  //
  // With options.backend == PoolBackend::kMpi the workers run on the node
  // agents of an MPI job instead (see pool/mpi.h: link //pool:mpi, and call
  // it on rank 0 inside a procpool::mpi::Session). Errors then name the
  // rank as well, and add kFailedPrecondition (//pool:mpi not linked, no
  // Session, no agent rank, or the agents' plugin manifests differ) and
  // kUnavailable (every agent rank is lost).
  static absl::StatusOr<ProcessPool> Create(PoolOptions options);

  ProcessPool(ProcessPool&&) noexcept;
  ProcessPool& operator=(ProcessPool&&) noexcept;
  // Drains, as Shutdown(/*wait=*/true) does (and as Python's `with` block
  // and C++ executors do): blocks until every queued and running task has
  // finished and the workers have exited. A task that never returns and has
  // no time limit makes it wait forever: call Shutdown(timeout) or
  // Terminate() first to bound it.
  ~ProcessPool();

  // ---- Tasks ----

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

  // The tasks the plugins register, in load order.
  std::vector<TaskDescription> Tasks() const;

  // ---- One task (concurrent.futures: submit) ----

  // Queues one call of `task` with `args` (converted to the task's argument
  // types and serialized here, on the calling thread). Never blocks on
  // workers and never throws for pool reasons: a task submitted after
  // Shutdown() resolves with kFailedPrecondition.
  template <class R, class... Args, class... U>
  Future<std::decay_t<R>> Submit(const TaskHandle<R(Args...)>& task, U&&... args) {
    return Submit(SubmitOptions{}, task, std::forward<U>(args)...);
  }
  template <class R, class... Args, class... U>
  Future<std::decay_t<R>> Submit(const SubmitOptions& options,
                                 const TaskHandle<R(Args...)>& task, U&&... args) {
    static_assert(sizeof...(U) == sizeof...(Args),
                  "Submit: wrong number of arguments for this task");
    auto state = MakeState<R, Args...>(task.index_, core_->NextSubmissionIndex(),
                                       std::forward<U>(args)...);
    state->mutable_policy() = pool_internal::PolicyFor(
        core_->DefaultPolicy(), options.timeout, options.retries);
    core_->Enqueue(state);
    return Future<std::decay_t<R>>(std::move(state));
  }

  // As above, looking the task up by name each time. A lookup failure
  // resolves the future with that error (kNotFound, kInvalidArgument).
  template <class R, class... Args, class... U>
  Future<std::decay_t<R>> Submit(TaskRef<R(Args...)> ref, U&&... args) {
    return Submit(SubmitOptions{}, ref, std::forward<U>(args)...);
  }
  template <class R, class... Args, class... U>
  Future<std::decay_t<R>> Submit(const SubmitOptions& options,
                                 TaskRef<R(Args...)> ref, U&&... args) {
    absl::StatusOr<TaskHandle<R(Args...)>> task = Task(ref);
    if (!task.ok()) {
      auto state = std::make_shared<internal::TypedTaskState<std::decay_t<R>>>(
          0, core_->NextSubmissionIndex());
      state->Cancel(task.status());
      return Future<std::decay_t<R>>(std::move(state));
    }
    return Submit(options, *task, std::forward<U>(args)...);
  }

  // ---- One task (multiprocessing.Pool: apply, apply_async) ----

  // Runs one call and blocks for its outcome. Never throws.
  template <class R, class... Args, class... U>
  absl::StatusOr<std::decay_t<R>> Apply(const TaskHandle<R(Args...)>& task,
                                        U&&... args) {
    return Submit(task, std::forward<U>(args)...).Result();
  }

  // Submit with callbacks: `callback(value)` on success or
  // `error_callback(status)` on failure, run once on the pool's I/O thread
  // (keep them quick; they must not block).
  template <class R, class... Args>
  Future<std::decay_t<R>> ApplyAsync(
      const TaskHandle<R(Args...)>& task, std::tuple<std::decay_t<Args>...> args,
      std::function<void(const std::decay_t<R>&)> callback = {},
      std::function<void(const absl::Status&)> error_callback = {}) {
    Future<std::decay_t<R>> f = std::apply(
        [&](auto&... a) { return Submit(task, std::move(a)...); }, args);
    if (callback || error_callback) {
      f.AddDoneCallback([callback = std::move(callback),
                         error_callback = std::move(error_callback)](
                            const Future<std::decay_t<R>>& done) {
        const absl::StatusOr<std::decay_t<R>> r = done.Result();
        if (r.ok()) {
          if (callback) callback(*r);
        } else if (error_callback) {
          error_callback(r.status());
        }
      });
    }
    return f;
  }

  // ---- Lazy maps ----

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
  // what it queued that no worker has started; items already running finish
  // and their results are dropped. (Note that `| std::views::take(n)` asks
  // for item n + 1 before it stops, as it does over any input range.)
  // Python: Executor.map, Pool.imap.
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

  // Python's Pool.imap and Pool.imap_unordered, for people porting code:
  // the same as Map and MapUnordered over one range.
  template <class R, class A, class Range>
  auto Imap(const TaskHandle<R(A)>& task, Range&& range, MapOptions options = {}) {
    return Map(options, task, std::forward<Range>(range));
  }
  template <class R, class A, class Range>
  auto ImapUnordered(const TaskHandle<R(A)>& task, Range&& range,
                     MapOptions options = {}) {
    return MapUnordered(options, task, std::forward<Range>(range));
  }

  // The lazy starmap Python never had: `range` yields argument tuples (or
  // pairs, or anything std::apply takes) and results come in input order.
  template <class R, class... Args, class Range>
  auto Istarmap(const TaskHandle<R(Args...)>& task, Range&& range,
                MapOptions options = {}) {
    return MakeStarRange<pool_internal::MapMode::kOrdered>(options, task,
                                                           std::forward<Range>(range));
  }
  template <class R, class... Args, class Range>
  auto TryIstarmap(const TaskHandle<R(Args...)>& task, Range&& range,
                   MapOptions options = {}) {
    return MakeStarRange<pool_internal::MapMode::kTry>(options, task,
                                                       std::forward<Range>(range));
  }

  // ---- Eager maps (multiprocessing.Pool: map, starmap) ----

  // Runs the whole map and returns every result in input order, or the
  // first failure (by input order). Blocks. Like Python's Pool.map, but
  // zip-free and never throws.
  template <class R, class... Args, class... Ranges>
  absl::StatusOr<std::vector<std::decay_t<R>>> MapAll(
      const TaskHandle<R(Args...)>& task, Ranges&&... ranges) {
    return MapAll(MapOptions{}, task, std::forward<Ranges>(ranges)...);
  }
  template <class R, class... Args, class... Ranges>
  absl::StatusOr<std::vector<std::decay_t<R>>> MapAll(
      const MapOptions& options, const TaskHandle<R(Args...)>& task,
      Ranges&&... ranges) {
    return Collect(TryMap(options, task, std::forward<Ranges>(ranges)...));
  }

  // Python's Pool.starmap: `range` yields argument tuples.
  template <class R, class... Args, class Range>
  absl::StatusOr<std::vector<std::decay_t<R>>> Starmap(
      const TaskHandle<R(Args...)>& task, Range&& range, MapOptions options = {}) {
    return Collect(TryIstarmap(task, std::forward<Range>(range), options));
  }

  // ---- Lifecycle and insight ----

  // Stops accepting tasks (later submissions resolve with
  // kFailedPrecondition). With `cancel_pending`, tasks not yet sent to a
  // worker resolve with kCancelled. With `wait`, blocks until every
  // remaining task has finished and the workers have exited; without it,
  // returns at once and the remaining work finishes in the background
  // (workers that retire meanwhile are still replaced while work remains).
  void Shutdown(bool wait = true, bool cancel_pending = false) {
    core_->Shutdown(wait, cancel_pending, absl::InfiniteDuration());
  }

  // Shutdown(/*wait=*/true, cancel_pending), but at most `timeout` from now
  // (pebble's join(timeout)): then the tasks still queued or running
  // resolve with kCancelled and their workers are stopped (SIGTERM, then
  // SIGKILL after PoolOptions::kill_grace). Blocks until the workers are
  // gone, so for at most about timeout + kill_grace. True if every task
  // finished before the deadline.
  bool Shutdown(absl::Duration timeout, bool cancel_pending = false) {
    return core_->Shutdown(/*wait=*/true, cancel_pending, timeout);
  }

  // Stops the pool now: every queued and running task resolves with
  // kCancelled, every worker is killed (SIGKILL, with what its tasks
  // forked), and later submissions resolve with kFailedPrecondition. Blocks
  // until the workers are reaped (milliseconds).
  void Terminate() { core_->Terminate(); }

  int num_workers() const { return core_->num_workers(); }

  // Process ids of the live worker processes, for diagnostics (and for
  // demonstrating what happens when one is killed). Never blocks on workers.
  std::vector<int> WorkerPids() const { return core_->WorkerPids(); }

  // Per-worker counters (tasks done, busy and idle time, time spent
  // serializing, resident memory, restarts and why) and pool-wide totals.
  // Never blocks on workers.
  PoolStats Stats() const { return core_->Stats(); }

  // For the implementation of the ranges and of backends.
  internal::Backend& core_for_internal_use() const { return *core_; }

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
  explicit ProcessPool(std::unique_ptr<internal::Backend> core)
      : core_(std::move(core)) {}

  template <class Range>
  static auto Collect(Range&& range)
      -> absl::StatusOr<std::vector<typename std::decay_t<
          decltype(*std::ranges::begin(range))>::value_type>> {
    using R = typename std::decay_t<decltype(*std::ranges::begin(range))>::value_type;
    std::vector<R> out;
    for (const absl::StatusOr<R>& r : range) {
      if (!r.ok()) return r.status();
      out.push_back(*r);
    }
    return out;
  }

  template <pool_internal::MapMode Mode, class R, class... Args, class... Ranges>
  auto MakeRange(const MapOptions& options, const TaskHandle<R(Args...)>& task,
                 Ranges&&... ranges) {
    static_assert(sizeof...(Ranges) == sizeof...(Args),
                  "Map: pass one range per task argument");
    return pool_internal::MapRange<Mode, pool_internal::InputShape::kZip,
                                   std::decay_t<R>, std::tuple<std::decay_t<Args>...>,
                                   std::views::all_t<Ranges>...>(
        this, task.index_, options, std::views::all(std::forward<Ranges>(ranges))...);
  }

  template <pool_internal::MapMode Mode, class R, class... Args, class Range>
  auto MakeStarRange(const MapOptions& options, const TaskHandle<R(Args...)>& task,
                     Range&& range) {
    return pool_internal::MapRange<Mode, pool_internal::InputShape::kStar,
                                   std::decay_t<R>, std::tuple<std::decay_t<Args>...>,
                                   std::views::all_t<Range>>(
        this, task.index_, options, std::views::all(std::forward<Range>(range)));
  }

  std::unique_ptr<internal::Backend> core_;
};

namespace pool_internal {

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

// The range behind Map, TryMap, MapUnordered and Istarmap.
template <MapMode Mode, InputShape Shape, class R, class ArgsTuple, class... Views>
class MapRange : public std::ranges::view_base {
 public:
  using Item = std::conditional_t<
      Mode == MapMode::kOrdered, R,
      std::conditional_t<Mode == MapMode::kTry, absl::StatusOr<R>,
                          Unordered<R, ArgsTuple>>>;

  MapRange(ProcessPool* pool, uint32_t task, MapOptions options, Views... views)
      : pool_(pool),
        task_(task),
        task_name_(pool->core_for_internal_use().tasks()[task].name),
        options_(std::move(options)),
        policy_(PolicyFor(pool->core_for_internal_use().DefaultPolicy(),
                          options_.task_timeout, options_.retries)),
        deadline_(options_.timeout == absl::InfiniteDuration()
                      ? absl::InfiniteFuture()
                      : absl::Now() + options_.timeout),
        views_(std::move(views)...) {}

  MapRange(MapRange&&) = default;
  MapRange& operator=(MapRange&&) = default;

  ~MapRange() { CancelOutstanding(); }

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
    total_ = KnownTotal(views_);
    if (options_.progress || options_.on_progress) {
      progress_ = std::make_unique<internal::ProgressReporter>(
          total_, options_.progress, options_.progress_fd, options_.on_progress);
    }
    return iterator(this);
  }
  std::default_sentinel_t end() { return {}; }

 private:
  using Its = std::tuple<std::ranges::iterator_t<Views>...>;
  using Chunk = internal::ChunkState;

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
    size_t w = pool_->core_for_internal_use().SuggestedWindow();
    if (options_.chunksize > 0) {
      w = std::max<size_t>(w, 2 * static_cast<size_t>(options_.chunksize) *
                                  static_cast<size_t>(pool_->num_workers()));
    }
    return w;
  }

  // Items per chunk: MapOptions::chunksize, else about a millisecond of
  // work as measured so far (1 until something was measured), small enough
  // that every worker gets a share of the window and of a known input.
  size_t ChunkSize(size_t window) const {
    if (options_.chunksize > 0) return static_cast<size_t>(options_.chunksize);
    if (policy_.timeout != absl::InfiniteDuration()) return 1;  // per-item deadlines
    const size_t workers = static_cast<size_t>(std::max(1, pool_->num_workers()));
    size_t c = pool_->core_for_internal_use().SuggestedChunkSize();
    c = std::min(c, std::max<size_t>(1, window / (2 * workers)));
    if (total_ > 0) c = std::min(c, std::max<size_t>(1, total_ / (4 * workers)));
    return c;
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
          [](auto&&... a) { return ArgsTuple(std::forward<decltype(a)>(a)...); },
          *it);
      ++it;
      return args;
    }
  }

  // Reads inputs into chunks until `Window()` items are outstanding or
  // inputs run out.
  void Fill() {
    if (inputs_done_ || expired_) return;
    // Called for every item: the quick answer while no chunk fits yet.
    if (Outstanding() > refill_below_) return;
    internal::Backend& core = pool_->core_for_internal_use();
    const size_t window = Window();
    const size_t chunk_size = ChunkSize(window);
    refill_below_ = window > chunk_size ? window - chunk_size : 0;
    const size_t max_bytes = core.max_chunk_bytes();
    std::vector<std::shared_ptr<internal::TaskState>> batch;
    std::shared_ptr<Chunk> chunk;  // being filled
    // Whole chunks only: topping the window up item by item would make
    // chunks of one.
    while (Outstanding() + chunk_size <= window || Outstanding() == 0 ||
           chunk != nullptr) {
      if (chunk == nullptr) {
        if (AnyAtEnd()) {
          inputs_done_ = true;
          if (options_.strict && !AllAtEnd()) length_mismatch_ = true;
          break;
        }
        chunk = NewChunk(next_index_);
      }
      // An item that did not fit, for the next chunk (its archive may be
      // empty: an argument of an empty struct encodes to no bytes).
      std::optional<std::string> carry;
      while (chunk->size() < chunk_size && !AnyAtEnd()) {
        ArgsTuple args = ReadArgs();
        std::apply([&](const auto&... a) { chunk->AddItem(a...); }, args);
        if constexpr (Mode == MapMode::kUnordered) {
          unordered_.emplace(next_index_, std::make_pair(chunk, std::move(args)));
        }
        ++next_index_;
        if (chunk->args().size() >= max_bytes) {
          if (chunk->args().size() > max_bytes && chunk->size() > 1) {
            carry = chunk->TakeLastItem();
          }
          break;
        }
      }
      Seal(chunk, batch);
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
    }
    if (!batch.empty()) core.EnqueueMany(batch);
  }

  std::shared_ptr<Chunk> NewChunk(size_t first_index) {
    auto chunk = std::make_shared<Chunk>(task_, first_index, task_name_);
    chunk->mutable_policy() = policy_;
    return chunk;
  }

  // A chunk is full: hook it to the window and the progress counters and
  // add it to the batch to queue.
  void Seal(std::shared_ptr<Chunk>& chunk,
            std::vector<std::shared_ptr<internal::TaskState>>& batch) {
    const size_t n = chunk->size();
    Chunk* raw = chunk.get();  // the callbacks live in the chunk itself
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
      return serialize_internal::DecodeArchive<R>(chunk.ItemBytes(i));
    } catch (const std::exception& e) {
      return absl::DataLossError(absl::StrCat(
          chunk.DescribeItem(chunk.first_index() + i),
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
        current_.emplace(
            Item{*i, std::move(args), ItemResult(*chunk, *i - chunk->first_index())});
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
    Fill();  // keep the workers busy while the caller looks at this item
  }

  // The map's timeout passed: stop reading inputs and cancel what is queued.
  void Expire() {
    expired_ = true;
    inputs_done_ = true;
    CancelOutstanding();
  }

  void Finish() {
    if (progress_ != nullptr) progress_.reset();  // final report
    if (length_mismatch_ && !mismatch_reported_) {
      mismatch_reported_ = true;
      absl::Status s = absl::InvalidArgumentError(
          "Map(strict): the input ranges have different lengths");
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

  ProcessPool* pool_;
  uint32_t task_;
  std::string task_name_;
  MapOptions options_;
  internal::TaskPolicy policy_;
  absl::Time deadline_;
  std::tuple<Views...> views_;
  std::optional<Its> its_;
  uint64_t total_ = 0;  // input length if known, else 0
  bool inputs_done_ = false;
  bool expired_ = false;
  bool length_mismatch_ = false;
  bool mismatch_reported_ = false;
  bool finished_ = false;
  size_t next_index_ = 0;
  // Fill() does nothing while more items than this are outstanding.
  size_t refill_below_ = SIZE_MAX;
  // Map and TryMap: chunks in input order, and their items not yet consumed.
  std::deque<Slot> window_;
  size_t outstanding_ = 0;
  absl::StatusOr<R> result_{absl::UnknownError("no item yet")};
  std::unique_ptr<internal::ProgressReporter> progress_;
  // MapUnordered: outstanding items by input index, and completion order.
  std::optional<Item> current_;
  absl::flat_hash_map<size_t, std::pair<std::shared_ptr<Chunk>, ArgsTuple>> unordered_;
  std::shared_ptr<internal::CompletionQueue> queue_ =
      std::make_shared<internal::CompletionQueue>();
};

}  // namespace pool_internal
}  // namespace procpool

#endif  // PROCPOOL_POOL_POOL_H_
