#include "cli/batch.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace procpool::cli {
namespace {

constexpr size_t kBytes = 2 * ProgressSlots::kSlots * sizeof(uint64_t);

absl::Status Errno(const std::string& what) {
  return absl::UnknownError(absl::StrCat(what, ": ", std::strerror(errno)));
}

}  // namespace

absl::StatusOr<ProgressSlots> ProgressSlots::Create() {
  std::vector<std::string> dirs = {"/dev/shm"};
  if (const char* t = std::getenv("TMPDIR"); t != nullptr && *t != '\0') dirs.push_back(t);
  dirs.push_back("/tmp");
  int fd = -1;
  for (const std::string& dir : dirs) {
    fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0) break;
    std::string templ = dir + "/poolrun-progress-XXXXXX";
    fd = ::mkostemp(templ.data(), O_CLOEXEC);
    if (fd >= 0) {
      ::unlink(templ.c_str());
      break;
    }
  }
  if (fd < 0) return Errno("progress file");
  if (::ftruncate(fd, kBytes) != 0) {
    absl::Status s = Errno("progress file");
    ::close(fd);
    return s;
  }
  void* p = ::mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    absl::Status s = Errno("map progress file");
    ::close(fd);
    return s;
  }
  return ProgressSlots(absl::StrCat("/proc/", ::getpid(), "/fd/", fd), fd,
                       static_cast<std::atomic<uint64_t>*>(p));
}

absl::StatusOr<ProgressSlots> ProgressSlots::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return Errno(absl::StrCat("open ", path));
  void* p = ::mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return Errno(absl::StrCat("map ", path));
  return ProgressSlots(path, -1, static_cast<std::atomic<uint64_t>*>(p));
}

ProgressSlots::ProgressSlots(ProgressSlots&& o) noexcept
    : path_(std::move(o.path_)), fd_(o.fd_), slots_(o.slots_) {
  o.fd_ = -1;
  o.slots_ = nullptr;
}

int64_t ProgressSlots::NowNs() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

ProgressSlots::~ProgressSlots() {
  if (slots_ != nullptr) ::munmap(slots_, kBytes);
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace procpool::cli
