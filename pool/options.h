// PoolOptions: how a ProcessPool is set up; SubmitOptions and MapOptions:
// the policy of one call and of one map.

#ifndef PROCPOOL_POOL_OPTIONS_H_
#define PROCPOOL_POOL_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "pool/stats.h"
#include "tasks/serialize.h"
#include "tasks/signature.h"
#include "tasks/task.h"

namespace procpool {

// What the pool does when a worker process dies.
enum class WorkerDeathPolicy {
  // Fail only the task the worker was running (kAborted, naming the signal
  // or exit code), re-queue the tasks queued behind it, start a replacement
  // worker and keep serving. The default.
  kReplaceWorker,
  // Python's BrokenProcessPool: fail every pending and running task with
  // kAborted and refuse new work.
  kBreakPool,
};

// A plugin task each worker runs once, after loading the plugins and before
// taking work (Python's initializer/initargs). Its result is discarded; if
// it throws, the worker reports the failure: Create() fails with it, and a
// replacement worker whose initializer keeps failing breaks the pool.
struct Initializer {
  std::string task;          // empty: none
  uint64_t fingerprint = 0;  // 0: not checked
  std::string args;          // cereal archive of the arguments

  // The task `ref` with `args`, encoded now; the worker checks the
  // signature and decodes them.
  template <class R, class... A, class... U>
  static Initializer Of(TaskRef<R(A...)> ref, U&&... args) {
    static_assert(sizeof...(A) == sizeof...(U), "wrong number of arguments");
    Initializer init;
    init.task = std::string(ref.name());
    init.fingerprint = Signature<R(A...)>::Fingerprint();
    internal::AppendArchive(&init.args,
                                      std::decay_t<A>(std::forward<U>(args))...);
    return init;
  }
};

// Where the pool's workers run.
enum class PoolBackend {
  // Worker processes on this machine, spawned by the pool. The default.
  kLocal,
  // Worker processes on the node agents of an MPI job (Open MPI): this
  // process is rank 0 and every other rank is an agent running a local pool
  // (see pool/mpi.h; needs //pool:mpi linked in and a procpool::mpi::Session).
  kMpi,
};

// What a sandboxed worker does when a task makes a system call the
// sandbox does not allow (PoolOptions::sandbox_on_denied).
enum class SandboxDenial {
  // The call fails with EPERM and the task goes on (it may handle the
  // error, or report it). The default.
  kFailCall,
  // The worker is stopped (SIGSYS) and the task fails with kAborted, the
  // error naming the system call, e.g. "... killed by signal 31 (SIGSYS):
  // the sandbox denied system call execve (59)". The pool replaces the
  // worker as after any crash.
  kStopWorker,
};

// A directory or file a sandboxed worker may use beyond the defaults
// (PoolOptions::sandbox_paths).
struct SandboxPath {
  std::string path;       // relative paths are resolved when the pool is created
  bool writable = false;  // false: read-only
};

// ---- Hard limits per worker (PoolOptions::limits) ----

// How PoolOptions::limits.memory_bytes is put in force.
enum class MemoryLimitMechanism {
  // A memory cgroup per worker where this process may create one, else
  // kRlimit. Stats().limits says which one a pool uses.
  kAuto,
  // A memory cgroup per worker, a child of this process's own memory
  // cgroup: cgroup v2 memory.max (memory.swap.max 0), or v1
  // memory.limit_in_bytes (and memory.memsw.limit_in_bytes where the kernel
  // has it), so the kernel's OOM killer stops the worker at the limit.
  // Create() fails with kFailedPrecondition where no group can be made.
  kCgroup,
  // RLIMIT_DATA in the worker (its private writable memory: heap, anonymous
  // mappings, stacks; not its code or shared memory): an allocation past it
  // fails, and the worker then stops itself.
  kRlimit,
};

// Limits no task may cross, enforced by the kernel while the task runs
// (unlike max_worker_rss_bytes, which only retires a worker after its task
// ended). A task that crosses one fails alone with kResourceExhausted, the
// error naming the limit and what was observed (peak memory, CPU seconds,
// descriptors); it is not retried; its worker is replaced and the pool goes
// on. 0 or infinite: no limit. Not with PoolBackend::kMpi. Each limit
// applies to every worker process, never to the process that made the pool.
struct WorkerLimits {
  // Memory of a worker (0: none; else at least 16 MiB), as
  // `memory_mechanism` says. A memory cgroup counts what the worker
  // allocates (and the page cache it fills) from the moment it is moved
  // into its group, right after it starts and before its first task; its
  // peak is memory.max_usage_in_bytes (v1) or memory.peak (v2). The group
  // is removed once the worker is reaped.
  uint64_t memory_bytes = 0;
  MemoryLimitMechanism memory_mechanism = MemoryLimitMechanism::kAuto;
  // CPU time one task (each item of a chunk) may use (infinite: none; else
  // 10 ms to 24 h): user + system time of the worker process, all its
  // threads, from the task's start. Enforced in the worker by a timer on its
  // CPU clock (timer_create(CLOCK_PROCESS_CPUTIME_ID), SIGXCPU) armed before
  // each task, so a task is stopped within a scheduler tick of the limit.
  // Unlike task_timeout (wall-clock, enforced by the pool) it does not count
  // time spent waiting. Not a security boundary: code running in the
  // worker can disarm the timer (use task_timeout against hostile tasks).
  absl::Duration cpu_per_task = absl::InfiniteDuration();
  // Descriptors a worker may have open (RLIMIT_NOFILE; 0: unchanged, else
  // 16 to 2^20). The worker's own (socket, status page, regions, what its
  // plugins opened) count; a worker that already holds that many after
  // loading its plugins fails to start. A task that ends (returns or
  // throws) with every descriptor in use, or that fails after an open()
  // failed with EMFILE, crossed it.
  uint64_t open_files = 0;
};

// How the pool starts its worker processes (PoolOptions::start_method).
enum class StartMethod {
  // Each worker is a new procpool_worker process (posix_spawn) that loads
  // the plugins, runs the preload and the initializer itself. The default.
  kSpawn,
  // One template process (a zygote, like Python's forkserver) loads the
  // plugins and runs the preload once; each worker is forked from it on
  // request, then runs the initializer. A worker starts in about a
  // millisecond however slow the plugins are to load, and what the plugins
  // and the preload built before the fork is shared copy-on-write. Forked
  // workers are children of this process exactly as spawned ones are (the
  // template forks with CLONE_PARENT): same socket, status page, death
  // signal, process group and exit status. The template never runs tasks
  // and is single-threaded when it forks; a template that is not (a plugin
  // started a thread while loading) or that fails is not used, and a
  // template that dies is restarted, the pool spawning meanwhile. While
  // the template is ready the pool keeps one spare worker forked and
  // ready (an extra process, Stats().spare_worker_pid), which the next
  // slot that needs a worker takes. Stats().start_method says which is in
  // force. Local backend only.
  kZygote,
};

// Settings of the MPI backend (PoolBackend::kMpi); ignored otherwise, but
// checked by Create() whatever the backend.
struct MpiOptions {
  // Front end and agents send each other a heartbeat this often when they
  // have nothing else to say. Positive and finite.
  absl::Duration heartbeat_interval = absl::Milliseconds(200);
  // An agent not heard from for this long (after it said hello) is lost: it
  // is never sent anything again, and its in-flight tasks are re-queued on
  // the other agents (or fail with kAborted, "remote worker rank N lost",
  // when requeue_on_agent_loss is false or no agent is left). An agent that
  // does not hear from the front end for this long stops its workers and
  // exits. Longer than heartbeat_interval (infinite: agents are never lost).
  absl::Duration agent_timeout = absl::Seconds(10);
  bool requeue_on_agent_loss = true;
};

// How ProcessPool::Create() sets a pool up. Every field has a usable
// default; most programs set only `plugins` (and perhaps `max_workers`).
// Create() checks every field before it starts anything: one out of the
// range its comment gives makes it fail with kInvalidArgument, naming the
// field, its value and the range.
struct PoolOptions {
  // Number of worker processes (>= 0); 0 means one per hardware thread.
  // With the MPI backend: per agent rank, each agent counting its own
  // hardware threads for 0.
  int max_workers = 0;

  // PoolBackend::kMpi runs the workers on MPI node agents (pool/mpi.h).
  PoolBackend backend = PoolBackend::kLocal;
  MpiOptions mpi;

  // Plugin shared objects every worker loads, in order (none empty).
  // Relative paths are resolved against the current directory when the
  // pool is created.
  std::vector<std::string> plugins;

  // The worker executable (//pool:procpool_worker). Empty: $PROCPOOL_WORKER,
  // else the one in this program's Bazel runfiles, else `procpool_worker`
  // next to this program.
  std::string worker_path;

  // What happens to the other tasks when a worker dies.
  WorkerDeathPolicy on_worker_death = WorkerDeathPolicy::kReplaceWorker;

  // Run once in each worker before it takes work. A fingerprint or
  // arguments without a task name are refused: use Initializer::Of.
  Initializer initializer;

  // How workers start (see StartMethod). MPI agents always spawn.
  StartMethod start_method = StartMethod::kSpawn;

  // A task run once after the plugins load and before the initializer, to
  // build what workers read (tables, models): with kZygote once, in the
  // template, so every worker shares its result copy-on-write (Python's
  // set_forkserver_preload); with kSpawn in each worker. Its failure fails
  // the start as the initializer's does. Set it with Initializer::Of.
  Initializer preload;

  // Replace a worker after it has run this many tasks (0: never), like
  // Python's maxtasksperchild.
  uint64_t max_tasks_per_child = 0;

  // Replace a worker once its resident memory, read after each task,
  // exceeds this many bytes (0: no limit).
  uint64_t max_worker_rss_bytes = 0;

  // Hard limits per worker, enforced while a task runs (see WorkerLimits).
  // max_worker_rss_bytes above is the soft counterpart: it recycles a
  // worker between tasks and never fails one; the two can be combined.
  WorkerLimits limits;

  // Defaults for tasks that do not set their own (see SubmitOptions): the
  // longest a task may run once it runs (positive; infinite: no limit), and
  // how many times a task whose worker died under it is re-run (>= 0).
  absl::Duration task_timeout = absl::InfiniteDuration();
  int retries = 0;

  // When the pool stops a worker (deadline, cancellation, destruction) it
  // sends SIGTERM, then SIGKILL after this long (>= 0 and finite).
  absl::Duration kill_grace = absl::Milliseconds(500);

  // Workers' stderr is captured through a pipe per worker. Each line is
  // copied to this process's stderr, prefixed with "[procpool worker
  // <slot> pid <pid>] ", unless this is false; the last
  // `stderr_tail_lines` lines are kept and quoted in the error of a task
  // whose worker crashed.
  bool forward_worker_stderr = true;
  int stderr_tail_lines = 8;  // quoted in a crashed task's error (>= 0)

  // A worker's stdout (fd 1) goes to the same pipe as its stderr, so what a
  // task prints is forwarded as above and never mixes with this process's
  // own output. With this true, workers write to this process's stdout
  // instead.
  bool inherit_worker_stdout = false;

  // How long a worker may take to load its plugins and run the initializer
  // (positive; infinite: as long as it takes): Create() fails after it, and
  // a replacement that takes longer is stopped and counts as a failed start.
  absl::Duration start_timeout = absl::Seconds(30);

  // Largest frame either side accepts; a result over it fails its task.
  // From 4 KiB (a worker's hello and a call's header must fit) to 2^32 - 1
  // (a frame's length on the wire has 32 bits).
  size_t max_frame_bytes = size_t{1} << 30;

  // Arguments and results of at least this many bytes cross through shared
  // memory instead of the socket: each worker has a region for calls and
  // one for results (memfds mapped by both processes, grown as needed and
  // reused), and the socket carries only where the bytes are. That saves
  // the kernel's two copies and the wake-ups of a long transfer. A region
  // holds one message at a time; the others (and everything when this is
  // 0) use the socket. A result stays in the worker's region until its
  // future is decoded (Get/Result) or dropped; until then that worker's
  // large results take the socket. Each region keeps its largest size
  // (at most max_frame_bytes) for the worker's life.
  size_t shared_memory_min_bytes = size_t{256} << 10;

  // Sandbox every worker (docs/SECURITY.md), for plugins that read
  // untrusted data. After loading the plugins and running the initializer,
  // and before its first task, each worker:
  //   - sets PR_SET_NO_NEW_PRIVS and loads a seccomp-bpf allowlist of the
  //     system calls serving tasks needs: no execve, no new processes
  //     (threads only), no ptrace or process_vm_*, no socket() (only AF_UNIX
  //     socketpairs), signals only to itself, no mount, bpf, io_uring, ...;
  //   - with `sandbox_network_namespace`, moves to a new network namespace
  //     where this process may create one (as root);
  //   - with Landlock (Linux 5.13+), may read only /usr, /lib, /lib64, a few
  //     device and /proc/self files, the plugins' directories and
  //     `sandbox_paths`, write only /dev/null and the writable
  //     `sandbox_paths`, not bind or connect TCP (ABI 4+), and not signal
  //     processes outside its sandbox (ABI 6+);
  //   - drops its capabilities.
  // Denied calls fail with EPERM (EACCES for paths Landlock refuses), or
  // stop the worker (sandbox_on_denied). Stats().sandbox says what is in
  // force; a kernel without Landlock leaves files unrestricted, and that
  // is said there. A worker that cannot put seccomp in force fails to
  // start (Create() fails, naming the step). Not with PoolBackend::kMpi.
  bool sandbox = false;
  // Directories or files the sandboxed workers may also read (or write);
  // each must exist when the pool is created. Only with `sandbox`.
  std::vector<SandboxPath> sandbox_paths;
  SandboxDenial sandbox_on_denied = SandboxDenial::kFailCall;
  // RLIMIT_FSIZE of a sandboxed worker: the largest file it may write, in
  // bytes (0: unchanged). A write past it fails with EFBIG (the worker
  // ignores SIGXFSZ).
  uint64_t sandbox_max_file_bytes = 0;
  // RLIMIT_NPROC of a sandboxed worker (0: unchanged): it may not start a
  // thread while its user has this many processes and threads in all. The
  // seccomp filter forbids new processes whatever this is.
  uint64_t sandbox_max_processes = 0;
  // Also move each sandboxed worker into a network namespace of its own
  // (where this process may create one: as root). Off by default: the
  // seccomp filter already refuses every socket() and Landlock every TCP
  // bind or connect, and a namespace per worker costs each worker start
  // (0.5-6 ms measured here, and the first one after boot took 70 s).
  bool sandbox_network_namespace = false;

  // ---- Backpressure ----
  // The most work the pool holds at once (>= 0; 0: no bound): tasks
  // submitted and not yet resolved, queued or running, counting each item
  // of a map's chunks. While it is reached, Submit (and Apply, ApplyAsync)
  // waits up to SubmitOptions::wait for a slot, TrySubmit refuses at once,
  // and a map reads ahead only as far as the free slots let it (it never
  // fails an item because of the bound). A slot frees when its future
  // resolves, whatever the outcome (value, error, crash, cancellation,
  // shutdown), whether or not anybody reads it. Shutdown and Terminate wake
  // every waiting Submit, whose future then resolves with the pool's reason
  // (kFailedPrecondition). With PoolBackend::kMpi the bound holds on rank 0.
  int64_t max_pending = 0;
};

// Per-call policy for Submit / Apply / ApplyAsync. Out of range, the
// call's future resolves with kInvalidArgument naming the field, and
// nothing is queued.
struct SubmitOptions {
  // Longest the task may run once a worker starts it (positive). When it
  // runs out the future fails with kDeadlineExceeded at once and the worker
  // is stopped (SIGTERM, then SIGKILL after PoolOptions::kill_grace) and
  // replaced. Infinite: PoolOptions::task_timeout.
  absl::Duration timeout = absl::InfiniteDuration();
  // Re-run the task on another worker when its worker dies under it, up to
  // this many times; after retries + 1 deaths the task fails as a "poison
  // task" with every crash's reason. -1: PoolOptions::retries; below -1 is
  // out of range.
  int retries = -1;
  // With PoolOptions::max_pending reached: how long Submit waits for a
  // slot (>= 0) before its future resolves with kResourceExhausted naming
  // PoolOptions::max_pending and its value, the task not queued. Infinite
  // (the default): wait until a slot frees or the pool stops, as a bounded
  // queue's put() does. 0: do not wait. Ignored without a bound, and by a
  // Submit from a done-callback run by the pool, which never waits (it
  // would hold up the thread that frees slots).
  absl::Duration wait = absl::InfiniteDuration();
};

// Options of the lazy and eager maps (Map, TryMap, MapUnordered, Istarmap,
// MapAll, Starmap, ...). Out of range, the map queues nothing and yields
// kInvalidArgument, naming the field, as its only element: Map and Istarmap
// throw it as a TaskError when iterated, TryMap and MapUnordered yield it,
// MapAll and Starmap return it.
struct MapOptions {
  // How many items Map reads ahead of the item being consumed (and so how
  // many run at once). 0: automatic, from the measured task duration — a
  // few per worker for slow tasks, up to thousands for tiny ones.
  size_t window = 0;
  // Items sent to a worker as one call (Python's chunksize; >= 0). 0:
  // automatic, up to about 10 ms of work at the measured task duration:
  // the first chunks are an eighth of that (the first results come after
  // about a millisecond of work), and near the end of an input of known
  // length they shrink so the workers finish together. One item per call
  // with a task_timeout, so the deadline stays per item.
  int chunksize = 0;
  // With unequal input lengths, Map stops at the shortest. With `strict`,
  // it then reports the mismatch: iteration throws TaskError
  // (kInvalidArgument), and TryMap yields that error as its last element.
  bool strict = false;
  // Like Python's Executor.map(timeout=...): counted from the call; an item
  // not finished by then throws TaskError(kDeadlineExceeded) from Map (TryMap
  // and MapUnordered yield that status), and what is still queued is
  // cancelled. Positive; infinite: none.
  absl::Duration timeout = absl::InfiniteDuration();
  // Per-item policy, with the ranges of SubmitOptions.
  absl::Duration task_timeout = absl::InfiniteDuration();
  int retries = -1;
  // Draw a progress bar on `progress_fd` (stderr; >= 0) while iterating, if
  // it is a terminal: done/total (total when every input range has a size),
  // rate, ETA, failures.
  bool progress = false;
  int progress_fd = 2;
  // Called on the iterating thread about every 100 ms and once at the end,
  // for programs that draw their own progress.
  std::function<void(const Progress&)> on_progress;
};

}  // namespace procpool

#endif  // PROCPOOL_POOL_OPTIONS_H_
