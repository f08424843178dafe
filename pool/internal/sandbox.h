// ApplySandbox: confines the calling worker process for the rest of its
// life (docs/SECURITY.md). A worker calls it once, after loading its
// plugins and running the initializer, before its first task. The policy
// is in sandbox_policy.h; this applies it, in this order:
//
//   1. RLIMIT_FSIZE / RLIMIT_NPROC, when configured;
//   2. a new network namespace (unshare(CLONE_NEWNET)), where permitted;
//   3. PR_SET_NO_NEW_PRIVS;
//   4. Landlock (filesystem, TCP, signal scoping), as far as the kernel's
//      ABI version goes; skipped when the kernel has no Landlock;
//   5. every capability dropped (bounding, effective, permitted,
//      inheritable);
//   6. the seccomp-bpf allowlist, synchronized to every thread.
//
// Not thread-safe: call it while no other thread of the process changes
// its credentials or filters.

#ifndef PROCPOOL_POOL_INTERNAL_SANDBOX_H_
#define PROCPOOL_POOL_INTERNAL_SANDBOX_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace procpool::internal {

struct SandboxConfig {
  // A denied system call stops the worker with SIGSYS (after recording
  // which call it was) instead of failing with EPERM.
  bool kill_on_denied = false;
  std::vector<std::string> plugins;      // their directories are readable
  std::vector<std::string> read_paths;   // readable (absolute)
  std::vector<std::string> write_paths;  // readable and writable (absolute)
  uint64_t max_file_bytes = 0;           // RLIMIT_FSIZE (0: unchanged)
  uint64_t max_processes = 0;            // RLIMIT_NPROC (0: unchanged)
  bool network_namespace = false;        // unshare(CLONE_NEWNET) if permitted
};

// Where the SIGSYS handler of kill_on_denied records the denied call:
// its number plus one, then its name (NUL-terminated, at most `name_size`
// bytes with the NUL). Both must outlive the process.
struct DeniedCallRecord {
  std::atomic<uint32_t>* number_plus_one = nullptr;
  char* name = nullptr;
  size_t name_size = 0;
};

// Applies the sandbox; returns the SandboxLayer bits in force (with the
// Landlock ABI version). Fails, naming the step, when a layer that the
// kernel supports cannot be put in force (no_new_privs, seccomp, a
// Landlock rule's path), and leaves the process then in an unspecified
// state: the worker must not serve tasks after a failure.
absl::StatusOr<uint32_t> ApplySandbox(const SandboxConfig& config,
                                      DeniedCallRecord denied = {});

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_SANDBOX_H_
