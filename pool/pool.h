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
#include <functional>
#include <memory>
#include <ranges>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "pool/future.h"
#include "pool/internal/map_range.h"
#include "pool/options.h"
#include "pool/stats.h"
#include "tasks/serialize.h"
#include "tasks/signature.h"
#include "tasks/task.h"

namespace procpool {

class ProcessPool;

namespace internal {
class Backend;  // pool/internal/backend.h
}  // namespace internal

// A task checked against the pool's plugins: its name exists and its
// signature matches `Sig`. Cheap to copy. Valid for the pool that made it
// only: it carries that pool's identity (unique in the process, never
// reused), and another pool refuses it with kInvalidArgument.
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
  TaskHandle(std::string name, uint32_t index, uint64_t pool)
      : name_(std::move(name)), index_(index), pool_(pool) {}
  std::string name_;
  uint32_t index_;
  uint64_t pool_;  // ProcessPool::id_ of the pool that made it
};

// One description per task the pool's plugins register.
struct TaskDescription {
  std::string name;
  std::string plugin;     // path of the shared object
  std::string signature;  // e.g. "int(int, int)"
};

// An element of MapUnordered: which input it was, its arguments, and its
// outcome.
template <class R, class ArgsTuple>
struct Unordered {
  size_t index;
  ArgsTuple args;
  absl::StatusOr<R> result;
};

class ProcessPool {
 public:
  // Starts `options.max_workers` workers and waits until each has loaded
  // the plugins (and run the initializer) — at most options.start_timeout.
  // Blocks. First, an option out of range is kInvalidArgument naming it
  // (see PoolOptions), and nothing is started. Then errors name the file:
  // kNotFound (plugin or worker executable missing), kPermissionDenied
  // (worker not executable), kInvalidArgument (not a shared object, or no
  // procpool entry point), kFailedPrecondition (plugin built for another
  // ABI version), kAlreadyExists (two tasks of one name), kUnknown (the
  // initializer threw), kDeadlineExceeded (workers too slow to start).
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
    absl::StatusOr<uint32_t> index =
        FindTask(name, Signature<Sig>::Fingerprint(), Signature<Sig>::Readable());
    if (!index.ok()) return index.status();
    return TaskHandle<Sig>(std::string(name), *index, id_);
  }
  template <class Sig>
  absl::StatusOr<TaskHandle<Sig>> Task(TaskRef<Sig> ref) const {
    return Task<Sig>(ref.name());
  }

  // The tasks the plugins register, in load order.
  std::vector<TaskDescription> Tasks() const;

  // ---- One task (concurrent.futures: submit) ----

  // Queues one call of `task` with `args` (converted to the task's argument
  // types and serialized here, on the calling thread). Never throws for
  // pool reasons: a task submitted after Shutdown() resolves with
  // kFailedPrecondition, and one whose `options` are out of range with
  // kInvalidArgument (it is not queued). Without PoolOptions::max_pending
  // it never blocks on workers.
  //
  // Backpressure: with PoolOptions::max_pending set and reached, Submit
  // blocks until a slot frees (a pending task resolves), at most
  // `options.wait` (default: without bound, like a bounded queue's put());
  // then the future resolves with kResourceExhausted naming
  // PoolOptions::max_pending and its value, and nothing is queued.
  // Shutdown() or Terminate() ends the wait: the future resolves with
  // kFailedPrecondition. A Submit from a done-callback the pool runs never
  // waits (it would hold up the thread that frees slots): it resolves with
  // kResourceExhausted at once when the pool is full.
  template <class R, class... Args, class... U>
  Future<std::decay_t<R>> Submit(const TaskHandle<R(Args...)>& task, U&&... args) {
    return Submit(SubmitOptions{}, task, std::forward<U>(args)...);
  }
  template <class R, class... Args, class... U>
  Future<std::decay_t<R>> Submit(const SubmitOptions& options,
                                 const TaskHandle<R(Args...)>& task, U&&... args) {
    auto state = NewCall(task, std::forward<U>(args)...);
    // With `wait`, every outcome is in the future.
    Enqueue(state, options, task.pool_, task.name(), /*wait=*/true).IgnoreError();
    return Future<std::decay_t<R>>(std::move(state));
  }

  // Submit that never waits for a slot (PoolOptions::max_pending): when
  // the pool is full, returns kResourceExhausted naming the bound at once,
  // and nothing is queued (the arguments were converted and dropped; the
  // caller keeps its own). Otherwise returns the task's Future, the
  // caller's to keep or drop, which resolves as Submit's does (including
  // kInvalidArgument for out-of-range `options` and kFailedPrecondition
  // after Shutdown). Never blocks on workers. Without a bound it is Submit.
  template <class R, class... Args, class... U>
  absl::StatusOr<Future<std::decay_t<R>>> TrySubmit(
      const TaskHandle<R(Args...)>& task, U&&... args) {
    return TrySubmit(SubmitOptions{}, task, std::forward<U>(args)...);
  }
  template <class R, class... Args, class... U>
  absl::StatusOr<Future<std::decay_t<R>>> TrySubmit(
      const SubmitOptions& options, const TaskHandle<R(Args...)>& task,
      U&&... args) {
    auto state = NewCall(task, std::forward<U>(args)...);
    if (absl::Status full =
            Enqueue(state, options, task.pool_, task.name(), /*wait=*/false);
        !full.ok()) {
      return full;
    }
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
          0, NextSubmissionIndex());
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
  // (keep them quick; they must not block). An exception either throws is
  // reported on stderr and counted in PoolStats::callback_errors, as for
  // Future::AddDoneCallback.
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
  //
  // If reading input #k throws (dereferencing an iterator, incrementing it,
  // comparing it with its end, or converting the element to the task's
  // argument type), reading stops there: the range yields items 0 .. k-1
  // and then, when the consumer advances to item k, rethrows that same
  // exception. The same holds for TryMap, MapUnordered (after the items
  // before k, in completion order), Istarmap and TryIstarmap.
  // Python: Executor.map, Pool.imap.
  template <class R, class... Args, class... Ranges>
  auto Map(const TaskHandle<R(Args...)>& task, Ranges&&... ranges) {
    return Map(MapOptions{}, task, std::forward<Ranges>(ranges)...);
  }
  template <class R, class... Args, class... Ranges>
  auto Map(const MapOptions& options, const TaskHandle<R(Args...)>& task,
           Ranges&&... ranges) {
    return MakeRange<internal::MapMode::kOrdered>(
        options, task, std::forward<Ranges>(ranges)...);
  }

  // Like Map, but yields absl::StatusOr<R> per item and never throws for a
  // failed item: the run goes on past bad records. (An exception from
  // reading the inputs still comes out, as described for Map.)
  template <class R, class... Args, class... Ranges>
  auto TryMap(const TaskHandle<R(Args...)>& task, Ranges&&... ranges) {
    return TryMap(MapOptions{}, task, std::forward<Ranges>(ranges)...);
  }
  template <class R, class... Args, class... Ranges>
  auto TryMap(const MapOptions& options, const TaskHandle<R(Args...)>& task,
              Ranges&&... ranges) {
    return MakeRange<internal::MapMode::kTry>(options, task,
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
    return MakeRange<internal::MapMode::kUnordered>(
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
    return MakeStarRange<internal::MapMode::kOrdered>(
        options, task, std::forward<Range>(range));
  }
  template <class R, class... Args, class Range>
  auto TryIstarmap(const TaskHandle<R(Args...)>& task, Range&& range,
                   MapOptions options = {}) {
    return MakeStarRange<internal::MapMode::kTry>(options, task,
                                                  std::forward<Range>(range));
  }

  // ---- Eager maps (multiprocessing.Pool: map, starmap) ----

  // Runs the whole map and returns every result in input order, or the
  // first failure (by input order). Blocks. Like Python's Pool.map, but
  // zip-free and never throws: if reading input #k throws, returns kUnknown
  // naming k and the exception's type and what() (also the payloads that
  // TaskError::exception_type() and exception_what() read).
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

  // Python's Pool.starmap: `range` yields argument tuples. Never throws,
  // like MapAll.
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
  void Shutdown(bool wait = true, bool cancel_pending = false);

  // Shutdown(/*wait=*/true, cancel_pending), but at most `timeout` from now
  // (pebble's join(timeout)): then the tasks still queued or running
  // resolve with kCancelled and their workers are stopped (SIGTERM, then
  // SIGKILL after PoolOptions::kill_grace). Blocks until the workers are
  // gone, so for at most about timeout + kill_grace. True if every task
  // finished before the deadline.
  bool Shutdown(absl::Duration timeout, bool cancel_pending = false);

  // Stops the pool now: every queued and running task resolves with
  // kCancelled, every worker is killed (SIGKILL, with what its tasks
  // forked), and later submissions resolve with kFailedPrecondition. Blocks
  // until the workers are reaped (milliseconds).
  void Terminate();

  // The number of worker processes. Never blocks.
  int num_workers() const;

  // Process ids of the live worker processes, for diagnostics (and for
  // demonstrating what happens when one is killed). Never blocks on workers.
  std::vector<int> WorkerPids() const;

  // Per-worker counters (tasks done, busy and idle time, time spent
  // serializing, resident memory, restarts and why) and pool-wide totals.
  // Never blocks on workers.
  PoolStats Stats() const;

  // For the implementation of backends (pool/mpi.h) and for tests.
  internal::Backend& core_for_internal_use() const;

 private:
  explicit ProcessPool(std::unique_ptr<internal::Backend> core);

  // The calls the templates above make into the backend (pool.cc).
  absl::StatusOr<uint32_t> FindTask(std::string_view name, uint64_t fingerprint,
                                    std::string_view readable) const;
  size_t NextSubmissionIndex();
  // A call of `task` with `args` encoded, not yet queued.
  template <class R, class... Args, class... U>
  std::shared_ptr<internal::TypedTaskState<std::decay_t<R>>> NewCall(
      const TaskHandle<R(Args...)>& task, U&&... args) {
    static_assert(sizeof...(U) == sizeof...(Args),
                  "Submit: wrong number of arguments for this task");
    auto state = std::make_shared<internal::TypedTaskState<std::decay_t<R>>>(
        task.index_, NextSubmissionIndex());
    internal::AppendArchive(
        &state->args(),
        internal::AsArg<std::decay_t<Args>>(std::forward<U>(args))...);
    return state;
  }
  // Sets `state`'s policy from `options`, takes a slot of
  // PoolOptions::max_pending (waiting up to options.wait if `wait`) and
  // queues it; or resolves it with kInvalidArgument when `options` are out
  // of range or the task's handle (made by pool `task_pool`) belongs to
  // another pool. When no slot came: with `wait`, resolves it with
  // kResourceExhausted; without, returns that status and leaves it
  // unresolved. OK otherwise.
  absl::Status Enqueue(std::shared_ptr<internal::TaskState> state,
                       const SubmitOptions& options, uint64_t task_pool,
                       const std::string& task_name, bool wait);
  // The pool side of a map of the task `task` (the handle's index_, pool_
  // and name()); one that yields only an error if the map cannot run.
  internal::MapContext NewMapContext(uint32_t task, uint64_t task_pool,
                                     const std::string& task_name,
                                     const MapOptions& options) const;

  template <class Range>
  static auto Collect(Range&& range)
      -> absl::StatusOr<std::vector<typename std::decay_t<
          decltype(*std::ranges::begin(range))>::value_type>> {
    using R = typename std::decay_t<decltype(*std::ranges::begin(range))>::value_type;
    std::vector<R> out;
    try {
      for (const absl::StatusOr<R>& r : range) {
        if (!r.ok()) return r.status();
        out.push_back(*r);
      }
    } catch (...) {
      // Reading input #out.size() threw (TryMap yields everything else).
      return internal::CurrentInputError(out.size());
    }
    return out;
  }

  template <internal::MapMode Mode, class R, class... Args, class... Ranges>
  auto MakeRange(const MapOptions& options, const TaskHandle<R(Args...)>& task,
                 Ranges&&... ranges) {
    static_assert(sizeof...(Ranges) == sizeof...(Args),
                  "Map: pass one range per task argument");
    return internal::MapRange<Mode, internal::InputShape::kZip, std::decay_t<R>,
                              std::tuple<std::decay_t<Args>...>,
                              std::views::all_t<Ranges>...>(
        NewMapContext(task.index_, task.pool_, task.name(), options), options,
        std::views::all(std::forward<Ranges>(ranges))...);
  }

  template <internal::MapMode Mode, class R, class... Args, class Range>
  auto MakeStarRange(const MapOptions& options, const TaskHandle<R(Args...)>& task,
                     Range&& range) {
    return internal::MapRange<Mode, internal::InputShape::kStar, std::decay_t<R>,
                              std::tuple<std::decay_t<Args>...>,
                              std::views::all_t<Range>>(
        NewMapContext(task.index_, task.pool_, task.name(), options), options,
        std::views::all(std::forward<Range>(range)));
  }

  std::unique_ptr<internal::Backend> core_;
  // This pool's identity for its TaskHandles: from a process-wide counter,
  // so never the identity of another pool, even one at the same address.
  uint64_t id_;
};

}  // namespace procpool

#endif  // PROCPOOL_POOL_POOL_H_
