#include "pool/internal/child_process.h"

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "pool/internal/status_macros.h"

extern char** environ;

namespace procpool::internal {
namespace {

int PidfdOpen(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

// RAII for the posix_spawn attribute objects.
struct SpawnAttr {
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t actions;
  SpawnAttr() {
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_init(&actions);
  }
  ~SpawnAttr() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
};

}  // namespace

ExitStatus ExitStatus::FromWaitStatus(int wait_status) {
  if (WIFSIGNALED(wait_status)) return Signaled(WTERMSIG(wait_status));
  return Exited(WEXITSTATUS(wait_status));
}

std::string SignalName(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  if (abbrev == nullptr) return absl::StrCat("signal ", sig);
  return absl::StrCat("SIG", abbrev);
}

std::string ExitStatus::ToString() const {
  if (signaled()) {
    return absl::StrCat("killed by signal ", signal_, " (", SignalName(signal_),
                        ")");
  }
  return absl::StrCat("exited with code ", code_);
}

absl::StatusOr<ChildProcess> ChildProcess::Spawn(
    const std::string& path, const std::vector<std::string>& argv,
    const std::vector<FdMapping>& fds, bool new_process_group) {
  // posix_spawn reports exec failures too, but a precise message is cheaper
  // to give up front.
  if (::access(path.c_str(), F_OK) != 0) {
    return ErrnoToStatus(absl::StrCat("worker executable ", path), errno);
  }
  if (::access(path.c_str(), X_OK) != 0) {
    return ErrnoToStatus(
        absl::StrCat("worker executable ", path, " is not executable"), errno);
  }

  SpawnAttr sa;
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&sa.attr, &empty);
  posix_spawnattr_setsigdefault(&sa.attr, &all);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (new_process_group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&sa.attr, 0);
  }
  posix_spawnattr_setflags(&sa.attr, flags);
  for (const FdMapping& m : fds) {
    // dup2 onto another number clears close-on-exec on the child's copy.
    // Callers keep parent_fd away from the low child numbers, so the two
    // never coincide.
    posix_spawn_file_actions_adddup2(&sa.actions, m.parent_fd, m.child_fd);
  }

  std::vector<char*> cargv;
  cargv.reserve(argv.size() + 1);
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);

  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, path.c_str(), &sa.actions, &sa.attr,
                         cargv.data(), environ);
  if (rc != 0) return ErrnoToStatus(absl::StrCat("posix_spawn ", path), rc);
  UniqueFd pidfd(PidfdOpen(pid));  // -1 on old kernels: we fall back to polling
  return ChildProcess(pid, std::move(pidfd));
}

ChildProcess ChildProcess::Adopt(pid_t pid) {
  UniqueFd pidfd(PidfdOpen(pid));
  return ChildProcess(pid, std::move(pidfd));
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      status_(std::exchange(other.status_, std::nullopt)) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    KillAndReap();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    status_ = std::exchange(other.status_, std::nullopt);
  }
  return *this;
}

ChildProcess::~ChildProcess() { KillAndReap(); }

void ChildProcess::KillAndReap() {
  if (pid_ > 0 && !status_) {
    Kill(SIGKILL);
    Wait();
  }
}

void ChildProcess::Kill(int sig) {
  if (pid_ > 0 && !status_) {
    // A zombie ignores signals, so this cannot change how the child ended.
    ::kill(pid_, sig);
  }
}

std::optional<ExitStatus> ChildProcess::Poll() {
  if (status_ || pid_ <= 0) return status_;
  int ws = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &ws, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) status_ = ExitStatus::FromWaitStatus(ws);
  return status_;
}

ExitStatus ChildProcess::Wait() {
  if (status_) return *status_;
  int ws = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &ws, 0);
  } while (r < 0 && errno == EINTR);
  // ECHILD means someone else reaped it (e.g. SIGCHLD set to SIG_IGN); we
  // cannot know how it ended.
  status_ = r == pid_ ? ExitStatus::FromWaitStatus(ws) : ExitStatus::Exited(-1);
  return *status_;
}

std::optional<ExitStatus> ChildProcess::WaitFor(absl::Duration timeout) {
  if (status_) return status_;
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (Poll()) return status_;
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return std::nullopt;
    int ms = static_cast<int>(
        absl::ToInt64Milliseconds(std::min(left, absl::Milliseconds(50))) + 1);
    if (pidfd_.valid()) {
      pollfd p{pidfd_.get(), POLLIN, 0};
      ::poll(&p, 1, ms);
    } else {
      ::usleep(1000);
    }
  }
}

ExitStatus ChildProcess::TerminateOrKill(absl::Duration grace) {
  if (status_) return *status_;
  Kill(SIGTERM);
  if (auto s = WaitFor(grace)) return *s;
  Kill(SIGKILL);
  return Wait();
}

}  // namespace procpool::internal
