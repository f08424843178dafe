#include "pool/internal/unique_fd.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "pool/internal/status_macros.h"

namespace procpool::internal {

void UniqueFd::Reset(int fd) {
  if (fd_ >= 0) {
    // close() must not be retried on EINTR on Linux: the fd is gone anyway.
    ::close(fd_);
  }
  fd_ = fd;
}

absl::StatusOr<std::pair<UniqueFd, UniqueFd>> MakeSocketPair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return ErrnoToStatus("socketpair", errno);
  }
  return std::make_pair(UniqueFd(fds[0]), UniqueFd(fds[1]));
}

absl::StatusOr<UniqueFd> DupCloseOnExec(int fd, int min_fd) {
  int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, min_fd);
  if (dup < 0) return ErrnoToStatus("fcntl(F_DUPFD_CLOEXEC)", errno);
  return UniqueFd(dup);
}

absl::Status SetNonBlocking(int fd, bool non_blocking) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return ErrnoToStatus("fcntl(F_GETFL)", errno);
  flags = non_blocking ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (::fcntl(fd, F_SETFL, flags) != 0) {
    return ErrnoToStatus("fcntl(F_SETFL)", errno);
  }
  return absl::OkStatus();
}

}  // namespace procpool::internal
