#include "pool/internal/zygote.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "pool/internal/status_macros.h"

namespace procpool::internal {
namespace {

// At most this many descriptors per worker (socket, status page, stderr,
// stdout, two payload regions, and room to spare).
constexpr size_t kMaxFds = 16;
// The largest request: a worker's command line (one argument is at most
// 128 KiB for execve; a few of them).
constexpr size_t kMaxRequest = size_t{1} << 20;
// Where the template keeps its socket, and where a forked worker parks the
// descriptors it received before moving them to their numbers: above any
// number a worker is given.
constexpr int kTemplateSocketFd = 100;
constexpr int kParkFd = 200;

template <class T>
void Put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(v));
}

template <class T>
bool Get(absl::string_view& in, T* v) {
  if (in.size() < sizeof(T)) return false;
  std::memcpy(v, in.data(), sizeof(T));
  in.remove_prefix(sizeof(T));
  return true;
}

bool SendAll(int fd, absl::string_view msg) {
  while (::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL) < 0) {
    if (errno != EINTR) return false;
  }
  return true;
}

bool SendError(int fd, absl::string_view text) { return SendAll(fd, absl::StrCat("E", text)); }

// The number of threads of this process.
int CountThreads() {
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  int n = 0;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n;
}

// clone(CLONE_PARENT): like fork(), but the child's parent is ours.
pid_t ForkAsSibling() {
  return static_cast<pid_t>(::syscall(SYS_clone, CLONE_PARENT | SIGCHLD, nullptr, nullptr,
                                      nullptr, nullptr));
}

// In a freshly forked worker: moves `fds` to `targets` (whatever numbers
// they arrived on) and closes the originals.
void PlaceFds(const std::vector<int>& fds, const std::vector<int32_t>& targets) {
  std::vector<int> parked(fds.size());
  for (size_t i = 0; i < fds.size(); ++i) {
    parked[i] = ::fcntl(fds[i], F_DUPFD_CLOEXEC, kParkFd);
    ::close(fds[i]);
  }
  for (size_t i = 0; i < fds.size(); ++i) ::dup2(parked[i], targets[i]);
  for (int fd : parked) ::close(fd);
}

}  // namespace

// ---------------------------------------------------------------------------
// The pool's side

absl::StatusOr<WorkerTemplate> WorkerTemplate::Start(const std::string& worker_path,
                                                     const WorkerCommand& command) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return ErrnoToStatus("socketpair(template)", errno);
  }
  UniqueFd mine(sv[0]);
  UniqueFd theirs_low(sv[1]);
  PROCPOOL_ASSIGN_OR_RETURN(UniqueFd theirs, DupCloseOnExec(theirs_low.get(), 10));
  theirs_low.Reset();
  // What the template (a plugin loading) prints goes to this process's
  // stderr, never to its stdout.
  const std::vector<ChildProcess::FdMapping> fds = {{theirs.get(), command.fd},
                                                    {STDERR_FILENO, STDOUT_FILENO}};
  PROCPOOL_ASSIGN_OR_RETURN(
      ChildProcess proc,
      ChildProcess::Spawn(worker_path, command.ToArgv(worker_path), fds,
                          /*new_process_group=*/true));
  return WorkerTemplate(std::move(proc), std::move(mine));
}

WorkerTemplate::~WorkerTemplate() {
  sock_.Reset();  // it exits on EOF; the ChildProcess kills and reaps it
}

absl::StatusOr<std::string> WorkerTemplate::Receive(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string buf(64 * 1024, '\0');
  while (true) {
    pollfd p{sock_.get(), POLLIN, 0};
    const absl::Duration left = std::max(deadline - absl::Now(), absl::ZeroDuration());
    const int ms = static_cast<int>(absl::ToInt64Milliseconds(left + absl::Microseconds(999)));
    const int r = ::poll(&p, 1, ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoToStatus("poll(template)", errno);
    if (r == 0) return absl::DeadlineExceededError("the worker template did not answer");
    const ssize_t n = ::recv(sock_.get(), buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Dead("hung up");
    buf.resize(static_cast<size_t>(n));
    return buf;
  }
}

absl::Status WorkerTemplate::Dead(absl::string_view what) {
  ready_ = false;
  proc_.Kill(SIGKILL);
  std::optional<ExitStatus> status = proc_.WaitFor(absl::Seconds(1));
  return absl::UnavailableError(absl::StrCat("worker template pid ", proc_.pid(), " ", what,
                                             status ? absl::StrCat(" (", status->ToString(), ")")
                                                    : std::string()));
}

absl::Status WorkerTemplate::AwaitReady(absl::Duration timeout) {
  if (ready_) return absl::OkStatus();
  absl::StatusOr<std::string> msg = Receive(timeout);
  if (!msg.ok()) return msg.status();
  if (*msg == "R") {
    ready_ = true;
    return absl::OkStatus();
  }
  if (!msg->empty() && (*msg)[0] == 'E') {
    return absl::FailedPreconditionError(absl::StrCat(
        "worker template pid ", proc_.pid(), ": ", absl::string_view(*msg).substr(1)));
  }
  return Dead("said something unexpected");
}

absl::StatusOr<ChildProcess> WorkerTemplate::Fork(
    const std::vector<std::string>& argv, const std::vector<ChildProcess::FdMapping>& fds,
    absl::Duration timeout) {
  if (!ready_) return absl::FailedPreconditionError("the worker template is not ready");
  if (fds.size() > kMaxFds) return absl::InvalidArgumentError("too many descriptors");
  std::string msg = "F";
  Put(msg, static_cast<uint32_t>(fds.size()));
  for (const ChildProcess::FdMapping& m : fds) Put(msg, static_cast<int32_t>(m.child_fd));
  for (const std::string& a : argv) msg.append(a.c_str(), a.size() + 1);
  if (msg.size() > kMaxRequest) {
    return absl::InvalidArgumentError("a worker's command line too long for the template");
  }
  iovec iov{msg.data(), msg.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (!fds.empty()) {
    mh.msg_control = control;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    int* out = reinterpret_cast<int*>(CMSG_DATA(c));
    for (size_t i = 0; i < fds.size(); ++i) out[i] = fds[i].parent_fd;
  }
  while (::sendmsg(sock_.get(), &mh, MSG_NOSIGNAL) < 0) {
    if (errno == EINTR) continue;
    if (errno == EPIPE || errno == ECONNRESET) return Dead("hung up");
    return ErrnoToStatus("sendmsg(template)", errno);
  }
  absl::StatusOr<std::string> reply = Receive(timeout);
  if (absl::IsDeadlineExceeded(reply.status())) return Dead("did not answer a fork request");
  if (!reply.ok()) return reply.status();
  absl::string_view r = *reply;
  int32_t pid = 0;
  if (r.size() == 1 + sizeof(pid) && r[0] == 'P') {
    r.remove_prefix(1);
    Get(r, &pid);
    if (pid > 0) {
      // The worker makes itself a process group leader, but maybe not yet:
      // as its parent this process may do it too, so that the group
      // exists before anyone signals it (the classic race of shells).
      ::setpgid(pid, pid);
      return ChildProcess::Adopt(pid);
    }
  }
  if (!r.empty() && r[0] == 'E') {
    return absl::InternalError(
        absl::StrCat("worker template pid ", proc_.pid(), ": ", r.substr(1)));
  }
  return Dead("said something unexpected");
}

// ---------------------------------------------------------------------------
// The template's side

int ServeAsTemplate(UniqueFd sock_in, const absl::Status& error,
                    absl::FunctionRef<int(const WorkerCommand&)> run_worker) {
  const int sock = ::fcntl(sock_in.get(), F_DUPFD_CLOEXEC, kTemplateSocketFd);
  if (sock < 0) return 1;
  sock_in.Reset();
  if (!error.ok()) {
    SendError(sock, error.message());
    return 1;
  }
  if (const int threads = CountThreads(); threads != 1) {
    SendError(sock, absl::StrCat("it has ", threads,
                                 " threads after loading the plugins and running the preload; "
                                 "a fork would copy only one of them (and any lock another "
                                 "holds), so the template is not used"));
    return 1;
  }
  if (!SendAll(sock, "R")) return 1;
  std::string buf(kMaxRequest, '\0');
  while (true) {
    iovec iov{buf.data(), buf.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof(control);
    const ssize_t n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n == 0 ? 0 : 1;  // the pool hung up (or is gone)
    std::vector<int> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const int* in = reinterpret_cast<const int*>(CMSG_DATA(c));
      fds.insert(fds.end(), in, in + count);
    }
    auto close_fds = [&fds] {
      for (int fd : fds) ::close(fd);
    };
    absl::string_view req(buf.data(), static_cast<size_t>(n));
    uint32_t count = 0;
    std::vector<int32_t> targets;
    bool ok = (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) == 0 && !req.empty() && req[0] == 'F';
    if (ok) {
      req.remove_prefix(1);
      ok = Get(req, &count) && count == fds.size();
    }
    for (uint32_t i = 0; ok && i < count; ++i) {
      int32_t t = 0;
      ok = Get(req, &t) && t >= 0 && t < kTemplateSocketFd;
      targets.push_back(t);
    }
    std::vector<std::string> args;
    while (ok && !req.empty()) {
      const size_t end = req.find('\0');
      if (end == absl::string_view::npos) break;
      args.emplace_back(req.substr(0, end));
      req.remove_prefix(end + 1);
    }
    std::vector<const char*> argv;
    for (const std::string& a : args) argv.push_back(a.c_str());
    absl::StatusOr<WorkerCommand> command =
        ok ? WorkerCommand::Parse(static_cast<int>(argv.size()), argv.data())
           : absl::InvalidArgumentError("malformed fork request");
    if (!command.ok() || command->zygote) {
      close_fds();
      if (!SendError(sock, command.ok() ? "a template cannot fork a template"
                                        : command.status().message())) {
        return 1;
      }
      continue;
    }
    std::fflush(nullptr);  // nothing buffered is written twice
    const pid_t pid = ForkAsSibling();
    if (pid == 0) {
      ::close(sock);
      PlaceFds(fds, targets);
      ::setpgid(0, 0);
      const int code = run_worker(*command);
      std::fflush(nullptr);
      ::_exit(code);
    }
    const int fork_errno = errno;
    close_fds();
    std::string reply;
    if (pid > 0) {
      reply = "P";
      Put(reply, static_cast<int32_t>(pid));
    } else {
      reply = absl::StrCat("Eclone: ", std::strerror(fork_errno));
    }
    if (!SendAll(sock, reply)) return 1;
  }
}

}  // namespace procpool::internal
