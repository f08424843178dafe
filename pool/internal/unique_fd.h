// UniqueFd: sole owner of a file descriptor.
//
// Move-only. The destructor closes the descriptor (errors from close() are
// ignored: there is nothing useful to do with them). Not thread-safe; a
// UniqueFd is owned by one thread at a time.

#ifndef PROCPOOL_POOL_INTERNAL_UNIQUE_FD_H_
#define PROCPOOL_POOL_INTERNAL_UNIQUE_FD_H_

#include <utility>

#include "absl/status/statusor.h"

namespace procpool::internal {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(other.Release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership; the caller must close the result.
  [[nodiscard]] int Release() { return std::exchange(fd_, -1); }

  // Closes the current descriptor (if any) and takes `fd`.
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

// A connected AF_UNIX stream socketpair, both ends close-on-exec.
absl::StatusOr<std::pair<UniqueFd, UniqueFd>> MakeSocketPair();

// A close-on-exec duplicate of `fd` numbered at least `min_fd`.
absl::StatusOr<UniqueFd> DupCloseOnExec(int fd, int min_fd);

// Sets or clears O_NONBLOCK.
absl::Status SetNonBlocking(int fd, bool non_blocking);

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_UNIQUE_FD_H_
