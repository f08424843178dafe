// PoolOptions: how a ProcessPool is set up.

#ifndef PROCPOOL_POOL_OPTIONS_H_
#define PROCPOOL_POOL_OPTIONS_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/time/time.h"

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

struct PoolOptions {
  // Number of worker processes; 0 means one per hardware thread.
  int max_workers = 0;

  // Plugin shared objects every worker loads, in order. Relative paths are
  // resolved against the current directory when the pool is created.
  std::vector<std::string> plugins;

  // The worker executable (//pool:procpool_worker). Empty: $PROCPOOL_WORKER,
  // else the one in this program's Bazel runfiles, else `procpool_worker`
  // next to this program.
  std::string worker_path;

  WorkerDeathPolicy on_worker_death = WorkerDeathPolicy::kReplaceWorker;

  // How long Create() waits for every worker to load its plugins.
  absl::Duration start_timeout = absl::Seconds(30);

  // Largest frame either side accepts; a result over it fails its task.
  size_t max_frame_bytes = size_t{1} << 30;
};

}  // namespace procpool

#endif  // PROCPOOL_POOL_OPTIONS_H_
