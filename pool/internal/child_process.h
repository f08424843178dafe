// ChildProcess: sole owner of a spawned child process.
//
// Modelled on folly::Subprocess. Spawns with posix_spawn (never a bare fork
// of a possibly multi-threaded parent), so nothing but exec runs in the
// child before the new program starts. Move-only.
//
// The destructor kills (SIGKILL) a child that is still running and reaps it,
// so a ChildProcess never leaves a zombie. Not thread-safe.

#ifndef PROCPOOL_POOL_INTERNAL_CHILD_PROCESS_H_
#define PROCPOOL_POOL_INTERNAL_CHILD_PROCESS_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pool/internal/unique_fd.h"

namespace procpool::internal {

// How a child ended.
class ExitStatus {
 public:
  static ExitStatus FromWaitStatus(int wait_status);
  static ExitStatus Exited(int code) { return ExitStatus(code, 0); }
  static ExitStatus Signaled(int sig) { return ExitStatus(0, sig); }

  bool exited() const { return signal_ == 0; }
  bool signaled() const { return signal_ != 0; }
  int exit_code() const { return code_; }
  int signal() const { return signal_; }

  // "exited with code 3", "killed by signal 11 (SIGSEGV)".
  std::string ToString() const;

 private:
  ExitStatus(int code, int sig) : code_(code), signal_(sig) {}
  int code_;
  int signal_;
};

// "SIGSEGV" for 11; "signal 99" for unknown numbers.
std::string SignalName(int sig);

class ChildProcess {
 public:
  // A parent descriptor the child sees under another number. The parent's
  // copy stays close-on-exec; only the child's number is inherited.
  struct FdMapping {
    int parent_fd;
    int child_fd;
  };

  // Spawns `path` with `argv` (argv[0] included). Only the mapped fds and
  // 0, 1, 2 are inherited. The child gets default signal dispositions and
  // an empty signal mask; with `new_process_group` it leads its own process
  // group (so a terminal's Ctrl-C goes to the parent alone).
  // Errors: kNotFound (no such file), kPermissionDenied (not executable),
  // others from posix_spawn.
  static absl::StatusOr<ChildProcess> Spawn(
      const std::string& path, const std::vector<std::string>& argv,
      const std::vector<FdMapping>& fds, bool new_process_group);

  // Takes ownership of `pid`, a child of this process started some other
  // way (a worker a template forked with CLONE_PARENT, zygote.h). Until
  // it is reaped the pid cannot be reused, so its pidfd is the right one.
  static ChildProcess Adopt(pid_t pid);

  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  bool reaped() const { return status_.has_value(); }
  // Readable once the child has exited (for poll or epoll); -1 on kernels
  // without pidfd_open. Owned by this object.
  int pidfd() const { return pidfd_.get(); }

  // Sends `sig` unless the child has been reaped. Never blocks.
  void Kill(int sig);

  // Reaps the child if it has exited; never blocks.
  std::optional<ExitStatus> Poll();

  // Blocks until the child exits (at most `timeout`) and reaps it.
  std::optional<ExitStatus> WaitFor(absl::Duration timeout);

  // Blocks until the child exits and reaps it.
  ExitStatus Wait();

  // SIGTERM, then SIGKILL if the child is still alive after `grace`; reaps.
  ExitStatus TerminateOrKill(absl::Duration grace);

 private:
  ChildProcess(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  void KillAndReap();

  pid_t pid_ = -1;
  UniqueFd pidfd_;  // readable once the child exits
  std::optional<ExitStatus> status_;
};

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_CHILD_PROCESS_H_
