// WorkerCommand: the command line of a procpool_worker process, written by
// the pool that spawns it and read by the worker, so that the two sides
// spell it once.
//
//   procpool_worker --fd=3 --status-fd=4 --parent=PID --max-frame=BYTES
//                   [--call-region-fd=5 --result-region-fd=6 --shm-min=BYTES]
//                   [--max-tasks=N] [--max-rss=BYTES]
//                   [--preload-task=NAME --preload-fingerprint=FP --preload-args=HEX]
//                   [--init-task=NAME --init-fingerprint=FP --init-args=HEX]
//                   [--sandbox [--sandbox-netns] [--sandbox-stop-on-denied] [--sandbox-read=PATH]...
//                    [--sandbox-write=PATH]... [--sandbox-max-file-bytes=N]
//                    [--sandbox-max-processes=N]]
//                   [--limit-data=BYTES] [--limit-cpu-ms=N] [--limit-files=N]
//                   [plugin.so ...]
//
// or, for the template process of PoolOptions::start_method kZygote
// (zygote.h), which forks workers on request instead of serving tasks:
//
//   procpool_worker --zygote --fd=3 --parent=PID
//                   [--preload-task=NAME --preload-fingerprint=FP --preload-args=HEX]
//                   [plugin.so ...]
//
// A plain value; thread-compatible.

#ifndef PROCPOOL_POOL_INTERNAL_WORKER_COMMAND_H_
#define PROCPOOL_POOL_INTERNAL_WORKER_COMMAND_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace procpool::internal {

struct WorkerCommand {
  // The descriptors the worker finds its socket, status page and payload
  // regions on (-1: no payload regions).
  int fd = 3;
  int status_fd = 4;
  int call_region_fd = -1;
  int result_region_fd = -1;
  // The pool's pid: the worker exits if its parent is another process.
  pid_t parent = 0;
  size_t max_frame = size_t{1} << 30;
  uint64_t max_tasks = 0;   // retire after this many tasks (0: never)
  uint64_t max_rss = 0;     // retire over this resident size (0: never)
  size_t shm_min = 0;       // results from this size go to the region
  // The template of kZygote: `fd` is its request socket (zygote.h).
  bool zygote = false;
  // The preload: a task run once after loading the plugins, in the
  // template (kZygote) or in each worker (kSpawn); empty: none.
  std::string preload_task;
  uint64_t preload_fingerprint = 0;
  std::string preload_args;  // the archive of its arguments (raw bytes)
  // The initializer: a task run once before the hello (empty: none).
  std::string init_task;
  uint64_t init_fingerprint = 0;
  std::string init_args;    // the archive of its arguments (raw bytes)
  std::vector<std::string> plugins;
  // The sandbox (sandbox.h), applied after the initializer.
  bool sandbox = false;
  bool sandbox_stop_on_denied = false;
  std::vector<std::string> sandbox_read;
  std::vector<std::string> sandbox_write;
  uint64_t sandbox_max_file_bytes = 0;
  uint64_t sandbox_max_processes = 0;
  bool sandbox_netns = false;  // a network namespace of its own
  // Hard limits (worker_limits.h; 0: none): RLIMIT_DATA, CPU milliseconds
  // per task, RLIMIT_NOFILE.
  uint64_t limit_data = 0;
  uint64_t limit_cpu_ms = 0;
  uint64_t limit_files = 0;

  // argv for `program` (argv[0] included).
  std::vector<std::string> ToArgv(const std::string& program) const;
  // Parses argv (argv[0] skipped). kInvalidArgument naming the argument
  // that is malformed or unknown, or the flag that is missing.
  static absl::StatusOr<WorkerCommand> Parse(int argc, const char* const* argv);
};

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_WORKER_COMMAND_H_
