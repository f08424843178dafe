#include "pool/internal/shared_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

#include "pool/internal/status_macros.h"

namespace procpool::internal {

absl::StatusOr<SharedMemory> SharedMemory::Create(size_t size) {
  UniqueFd fd(::memfd_create("procpool-worker-status", MFD_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus("memfd_create", errno);
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return ErrnoToStatus("ftruncate(memfd)", errno);
  }
  return Map(std::move(fd), size);
}

absl::StatusOr<SharedMemory> SharedMemory::Map(UniqueFd fd, size_t size) {
  void* data =
      ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (data == MAP_FAILED) return ErrnoToStatus("mmap(memfd)", errno);
  return SharedMemory(std::move(fd), data, size);
}

SharedMemory::SharedMemory(SharedMemory&& other) noexcept
    : fd_(std::move(other.fd_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

SharedMemory& SharedMemory::operator=(SharedMemory&& other) noexcept {
  if (this != &other) {
    Unmap();
    fd_ = std::move(other.fd_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

SharedMemory::~SharedMemory() { Unmap(); }

void SharedMemory::Unmap() {
  if (data_ != nullptr) ::munmap(data_, size_);
  data_ = nullptr;
}

}  // namespace procpool::internal
