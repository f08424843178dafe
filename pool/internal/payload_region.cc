#include "pool/internal/payload_region.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "pool/internal/status_macros.h"

// Linux 5.14; older headers lack them, and older kernels answer EINVAL,
// which only costs the faults the populate would have saved.
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace procpool::internal {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

}  // namespace

RegionMapping::~RegionMapping() { ::munmap(data_, size_); }

absl::StatusOr<PayloadRegion> PayloadRegion::Create(const char* name) {
  UniqueFd fd(::memfd_create(name, MFD_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus("memfd_create", errno);
  return PayloadRegion(std::move(fd));
}

absl::Status PayloadRegion::MapAtLeast(size_t file_size) {
  void* p = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                   fd_.get(), 0);
  if (p == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrCat("mmap of a ", file_size, "-byte payload region: ",
                     ErrnoToStatus("mmap", errno).message()));
  }
  map_ = std::make_shared<RegionMapping>(static_cast<char*>(p), file_size);
  populated_ = 0;
  return absl::OkStatus();
}

void PayloadRegion::Populate(size_t end, bool write) {
  if (end <= populated_) return;
  // madvise wants a page-aligned start; populated_ always is.
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  end = std::min(map_->size(), (end + page - 1) / page * page);
  ::madvise(map_->data() + populated_, end - populated_,
            write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ);
  populated_ = end;
}

absl::Status PayloadRegion::Reserve(size_t end) {
  if (map_ == nullptr || end > map_->size()) {
    size_t old = map_ == nullptr ? 0 : map_->size();
    size_t size = std::max(end, old + old / 4);
    size = (size + kMiB - 1) / kMiB * kMiB;
    if (::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "growing a payload region to ", size, " bytes: ",
          ErrnoToStatus("ftruncate", errno).message()));
    }
    PROCPOOL_RETURN_IF_ERROR(MapAtLeast(size));
  }
  Populate(end, /*write=*/true);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<RegionMapping>> PayloadRegion::Covering(
    uint64_t offset, uint64_t length) {
  if (offset > UINT64_MAX - length) {
    return absl::DataLossError("a payload region reference overflows");
  }
  const uint64_t end = offset + length;
  if (map_ == nullptr || end > map_->size()) {
    struct stat st;
    if (::fstat(fd_.get(), &st) != 0) return ErrnoToStatus("fstat(payload region)", errno);
    if (static_cast<uint64_t>(st.st_size) < end) {
      return absl::DataLossError(absl::StrCat(
          "a payload region reference [", offset, ", ", end,
          ") is beyond the region's ", st.st_size, " bytes"));
    }
    PROCPOOL_RETURN_IF_ERROR(MapAtLeast(static_cast<size_t>(st.st_size)));
  }
  Populate(static_cast<size_t>(end), /*write=*/false);
  return map_;
}

}  // namespace procpool::internal
