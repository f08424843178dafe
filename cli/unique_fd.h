// UniqueFd: the one owner of a file descriptor, for poolrun and its
// worker-side adapter.

#ifndef PROCPOOL_CLI_UNIQUE_FD_H_
#define PROCPOOL_CLI_UNIQUE_FD_H_

namespace procpool::cli {

// Owns a file descriptor; closes it in its destructor. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.Release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();

  int get() const { return fd_; }
  [[nodiscard]] int Release();

 private:
  int fd_ = -1;
};

}  // namespace procpool::cli

#endif  // PROCPOOL_CLI_UNIQUE_FD_H_
