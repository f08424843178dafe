// The worker's side of PoolOptions::limits (hard limits per worker): the
// resource limits a procpool_worker puts on itself after loading its
// plugins (and before its sandbox), the per-task CPU limit it re-arms
// before each task, and how it records a crossing for the pool.
//
// A task that crosses a limit does not return: the worker writes which
// limit and what it observed into its status page (limit_crossed,
// limit_observed, shared_memory.h) while running_task still names the
// task, and exits with kLimitExitCode. The pool (limits.h) turns that into
// the task's kResourceExhausted error. The memory cgroup, when the pool
// uses one, is the pool's business; the worker only sees RLIMIT_DATA when
// the pool fell back to it.
//
//   - memory (RLIMIT_DATA): an allocation past the limit fails; the
//     worker's std::new_handler records its private memory (VmData, from
//     /proc/self/statm opened before the sandbox) and exits. A C malloc
//     that returns NULL is the task's to handle.
//   - CPU per task: a one-shot timer on the process's CPU clock
//     (CLOCK_PROCESS_CPUTIME_ID) raising SIGXCPU, armed before each task
//     (timer_settime, which the sandbox allows); the handler records the
//     task's CPU time and exits. One that fires for a task already over is
//     ignored. (Under ThreadSanitizer, which runs handlers only at its
//     interceptors, SIGXCPU keeps its default action and ends the worker.)
//   - open files (RLIMIT_NOFILE, soft = hard): after each task, a full
//     descriptor table, or a task that failed with errno EMFILE, is a
//     crossing.
//
// Process-wide state of the worker process; called from its one serving
// thread.

#ifndef PROCPOOL_POOL_INTERNAL_WORKER_LIMITS_H_
#define PROCPOOL_POOL_INTERNAL_WORKER_LIMITS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "pool/internal/shared_memory.h"

namespace procpool::internal {

// The exit code of a worker that stopped itself at a limit.
inline constexpr int kLimitExitCode = 97;

struct WorkerLimitArgs {
  uint64_t data_bytes = 0;   // RLIMIT_DATA (0: unchanged)
  uint64_t cpu_ms = 0;       // CPU per task (0: none)
  uint64_t open_files = 0;   // RLIMIT_NOFILE (0: unchanged)
  bool any() const { return data_bytes != 0 || cpu_ms != 0 || open_files != 0; }
};

// Puts the limits in force in this process. Errors name the limit: one the
// worker already exceeds after loading its plugins (kFailedPrecondition),
// or a setrlimit that failed.
absl::Status ApplyWorkerLimits(const WorkerLimitArgs& args, WorkerStatusPage* page);

// Whether any limit needs the per-task hooks below.
bool WorkerLimitsActive();

// Before a task (each item of a chunk): arms its CPU limit, clears errno.
void BeforeLimitedTask();

// After a task returned (`failed`: with an error or exception): stops the
// worker if it crossed the open-files limit. Call while running_task still
// names the task.
void AfterLimitedTask(bool failed);

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_WORKER_LIMITS_H_
