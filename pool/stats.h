// Insights into a running pool: ProcessPool::Stats().

#ifndef PROCPOOL_POOL_STATS_H_
#define PROCPOOL_POOL_STATS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace procpool {

// One worker slot: the worker now serving it and those before it.
struct WorkerStats {
  int slot = 0;                // 0 .. max_workers - 1
  int pid = 0;                 // 0 while no worker is alive in the slot
  uint64_t tasks_done = 0;     // by every worker that served the slot
  absl::Duration busy;         // running tasks
  absl::Duration idle;         // alive and not running a task
  absl::Duration serialize;    // decoding calls and encoding results (worker)
  uint64_t rss_bytes = 0;      // after the latest task (with a memory limit)
  uint64_t peak_rss_bytes = 0; // highest of any worker in the slot
  int restarts = 0;            // workers replaced in this slot
  std::vector<std::string> restart_reasons;  // the latest 16, oldest first
};

// A snapshot of the whole pool, from ProcessPool::Stats(). The counts are
// read one by one while the pool runs, so they need not add up exactly.
struct PoolStats {
  std::vector<WorkerStats> workers;  // one per worker slot
  uint64_t submitted = 0;  // tasks queued since the pool started
  uint64_t succeeded = 0;  // tasks that returned a value
  uint64_t failed = 0;     // errors, crashes, deadlines (not cancellations)
  uint64_t pending = 0;    // queued, not yet sent to a worker
  uint64_t in_flight = 0;  // sent to a worker, not yet finished
  // Calls whose arguments, and results, crossed through shared memory
  // rather than the socket (PoolOptions::shared_memory_min_bytes).
  uint64_t shared_memory_args = 0;
  uint64_t shared_memory_results = 0;
  // The serial fast path (docs/ARCHITECTURE.md, "LocalDriver"): single
  // tasks the submitting thread sent to an idle worker itself, and answers
  // read by the thread waiting for them, both without the I/O thread.
  // Never a map's chunks.
  uint64_t direct_calls = 0;
  uint64_t caller_reads = 0;
  // Done-callbacks (Future::AddDoneCallback, ApplyAsync) that threw. Each
  // such exception is reported on stderr with the task's index and the
  // exception's type and what(), and goes no further.
  uint64_t callback_errors = 0;
  // The sandbox in force in the workers (PoolOptions::sandbox): "off", or
  // its layers as the newest live worker reported them, e.g. "seccomp
  // allowlist (denied calls fail EPERM), no_new_privs, network namespace,
  // Landlock ABI 7 (files, TCP, signals), capabilities dropped". Without
  // Landlock in the kernel it says "no Landlock (the kernel lacks it): files
  // not restricted".
  std::string sandbox = "off";
  // The hard limits in force in the workers (PoolOptions::limits): "off",
  // or each limit and its mechanism, e.g. "memory 256 MiB (memory cgroup
  // v1: memory.limit_in_bytes + memsw), CPU 2s per task (a CPU-time timer,
  // SIGXCPU), open files 64 (RLIMIT_NOFILE)"; "memory 256 MiB
  // (RLIMIT_DATA)" where no cgroup could be made.
  std::string limits = "off";
  // How workers start (PoolOptions::start_method): "spawn", "zygote
  // (template pid N)", or "spawn (template unavailable: why)" while the
  // template is restarted or when it cannot be used. `template_starts`
  // counts the template processes started (0 with kSpawn).
  std::string start_method = "spawn";
  uint64_t template_starts = 0;
  // kZygote: the spare worker forked ahead, which the next slot that needs
  // a worker adopts (0: none).
  int spare_worker_pid = 0;
};

// Where a map is, for progress callbacks (MapOptions::on_progress).
struct Progress {
  uint64_t done = 0;    // items finished (successfully or not)
  uint64_t failed = 0;  // of which failed
  uint64_t total = 0;   // 0 when the input's size is not known
  absl::Duration elapsed;       // since the map started
  double items_per_second = 0;  // done / elapsed
  absl::Duration eta = absl::InfiniteDuration();  // infinite when unknown
};

}  // namespace procpool

#endif  // PROCPOOL_POOL_STATS_H_
