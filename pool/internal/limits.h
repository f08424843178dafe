// The pool's side of PoolOptions::limits (hard limits per worker): the
// memory cgroup of each worker, which mechanism a pool uses, what the
// worker's command line carries, and what a worker's exit says about a
// limit it crossed. The worker's side is worker_limits.h.
//
// Memory: where this process may create memory cgroups (a child of its own
// memory cgroup: cgroup v1 memory.limit_in_bytes (+ memsw), or v2
// memory.max with memory.swap.max 0), the pool makes one group for itself,
// procpool-<pid>-<n>, and one per worker inside it, w<id>; the worker is
// moved in right after it is spawned and before it is sent anything; the
// kernel's OOM killer stops it at the limit. Otherwise (or with
// MemoryLimitMechanism::kRlimit) the worker sets RLIMIT_DATA on itself.
//
// MemoryCgroup owns one group directory: created with its limit, removed
// by its destructor once nothing is left in it (what is left is killed).
// Not thread-safe: the local driver's I/O lock guards the workers' groups.

#ifndef PROCPOOL_POOL_INTERNAL_LIMITS_H_
#define PROCPOOL_POOL_INTERNAL_LIMITS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "pool/internal/shared_memory.h"
#include "pool/internal/worker_command.h"
#include "pool/options.h"

namespace procpool::internal {

class MemoryCgroup {
 public:
  enum class Version { kV1, kV2 };

  // Makes the directory `parent`/`name` with a memory limit of
  // `limit_bytes` (0: none; a v2 group then hands the memory controller on
  // to its children). Errors name the file that could not be written.
  static absl::StatusOr<std::unique_ptr<MemoryCgroup>> Create(const std::string& parent,
                                                              Version version,
                                                              const std::string& name,
                                                              uint64_t limit_bytes);
  // Kills whatever is still in the group, then removes it (retrying for a
  // moment while the kernel lets go of the dying).
  ~MemoryCgroup();
  MemoryCgroup(const MemoryCgroup&) = delete;
  MemoryCgroup& operator=(const MemoryCgroup&) = delete;

  // Moves process `pid` into the group. A process that is already gone is
  // not an error (its exit says more).
  absl::Status AddProcess(pid_t pid);
  // The group's peak memory use in bytes (memory.max_usage_in_bytes,
  // memory.peak; 0 where the kernel has neither), and how many processes
  // the OOM killer killed in it.
  uint64_t PeakBytes() const;
  uint64_t OomKills() const;

  const std::string& path() const { return path_; }
  Version version() const { return version_; }
  bool has_memsw() const { return memsw_; }

 private:
  MemoryCgroup(std::string path, Version version) : path_(std::move(path)), version_(version) {}

  std::string path_;
  Version version_;
  bool memsw_ = false;
};

// This process's memory cgroup directory and its version, from
// /proc/self/cgroup and /proc/self/mountinfo; kNotFound where no memory
// controller is mounted.
absl::StatusOr<std::pair<std::string, MemoryCgroup::Version>> OwnMemoryCgroup();

// What a worker's exit tells about a limit (all of it read after the exit).
struct LimitFacts {
  LimitKind crossed = LimitKind::kNone;  // the worker's own record
  uint64_t observed = 0;                 // with it
  int signal = 0;                        // the signal that ended it (0: it exited)
  uint64_t oom_kills = 0;                // in its memory cgroup
  uint64_t cgroup_peak = 0;              // its memory cgroup's peak
};

// The words for a crossed limit, e.g. "crossed its memory limit of 64 MiB
// (PoolOptions::limits.memory_bytes, memory cgroup v1): peak 64 MiB, killed
// by the kernel's OOM killer"; empty when `facts` show none.
// `memory_mechanism` names how the memory limit was in force. Pure.
std::string DescribeLimitCrossing(const WorkerLimits& limits,
                                  const std::string& memory_mechanism,
                                  const LimitFacts& facts);

// The pool's limits, decided once when it is created.
class PoolLimits {
 public:
  // Nothing (nullptr) without limits. With a memory limit, picks its
  // mechanism: for kAuto and kCgroup, tries to make the pool's group
  // (kCgroup fails with kFailedPrecondition, naming why, where it cannot).
  static absl::StatusOr<std::unique_ptr<PoolLimits>> Create(const WorkerLimits& limits);

  // kCgroup or kRlimit for a memory limit (kAuto without one).
  MemoryLimitMechanism mechanism() const { return mechanism_; }
  // A group for worker `id` with `pid` moved in; nullptr when the pool
  // uses no cgroup.
  absl::StatusOr<std::unique_ptr<MemoryCgroup>> Attach(uint64_t id, pid_t pid) const;
  // For PoolStats::limits.
  const std::string& description() const { return description_; }
  // What the exit of a worker (its status page, the signal that ended it
  // or 0, its group or nullptr) says about a limit; empty: none crossed.
  std::string Crossing(const WorkerStatusPage& page, int signal,
                       const MemoryCgroup* group) const;

 private:
  PoolLimits() = default;

  WorkerLimits limits_;
  MemoryLimitMechanism mechanism_ = MemoryLimitMechanism::kAuto;
  std::unique_ptr<MemoryCgroup> pool_group_;  // the workers' groups are inside
  std::string memory_how_;                    // "memory cgroup v1", "RLIMIT_DATA"
  std::string description_ = "off";
};

// The worker's command-line flags for `limits` (whose memory mechanism is
// already decided: RLIMIT_DATA only with kRlimit).
void SetWorkerLimitArgs(const WorkerLimits& limits, WorkerCommand* command);

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_LIMITS_H_
