// PayloadRegion: a growable shared-memory file (memfd) through which large
// arguments and results cross between the pool and a worker instead of
// being copied through the socket.
//
// Each worker has two: the call region, where the pool writes large
// arguments (and the worker may write the answer back over them), and the
// result region, where the worker writes other large answers. A region is mapped once and reused, so its pages are faulted in
// once per worker rather than once per message (on a paravirtualised VM a
// first touch of a page costs ~18 us; a fresh memfd per message measured
// 0.19 GB/s here, a reused region 8-12 GB/s). The frame on the socket then
// carries a RegionRef (offset and length) in place of the bytes.
//
// Which bytes are in use, and who may write them, is agreed through the
// protocol (see kRegionBit, kRegionResult and kRegionResultInCall in
// wire.h): the pool writes one call's arguments at a time and reuses the
// space once that call is answered and no answer written over it is still
// borrowed; the worker may write a large answer over the arguments it came
// from, within what the pool mapped (it never grows the call region), and
// writes the result region only while the pool holds no lease on the
// previous result there (WorkerStatusPage::result_region_busy). Only the
// pool grows the call region, only the worker the result region.
//
// Not thread-safe. Mappings are shared_ptrs so that bytes handed out stay
// mapped after the region has grown (and been mapped again) or the region
// itself is gone.

#ifndef PROCPOOL_POOL_INTERNAL_PAYLOAD_REGION_H_
#define PROCPOOL_POOL_INTERNAL_PAYLOAD_REGION_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "pool/internal/unique_fd.h"

namespace procpool::internal {

// A read-write MAP_SHARED mapping of the start of a file; unmapped on
// destruction.
class RegionMapping {
 public:
  RegionMapping(char* data, size_t size) : data_(data), size_(size) {}
  ~RegionMapping();
  RegionMapping(const RegionMapping&) = delete;
  RegionMapping& operator=(const RegionMapping&) = delete;

  char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  char* const data_;
  const size_t size_;
};

class PayloadRegion {
 public:
  // A new, empty region (a close-on-exec memfd named `name`).
  static absl::StatusOr<PayloadRegion> Create(const char* name);
  // The other side's region, from the descriptor it passed us.
  explicit PayloadRegion(UniqueFd fd) : fd_(std::move(fd)) {}

  PayloadRegion(PayloadRegion&&) = default;
  PayloadRegion& operator=(PayloadRegion&&) = default;

  int fd() const { return fd_.get(); }
  bool valid() const { return fd_.valid(); }

  // Writer side: makes bytes [0, end) writable, growing the file (by at
  // least a quarter, in whole MiB) and mapping it again when needed, and
  // faults the pages in with one system call instead of one fault each.
  // Errors: ENOMEM/ENOSPC from the kernel, as kResourceExhausted.
  absl::Status Reserve(size_t end);

  // Reader side: the mapping that covers [offset, offset + length),
  // mapping the file again if the writer grew it. kDataLoss if the file is
  // shorter (a peer that lies about what it wrote).
  absl::StatusOr<std::shared_ptr<RegionMapping>> Covering(uint64_t offset,
                                                          uint64_t length);

  // The current mapping (null before the first Reserve/Covering).
  const std::shared_ptr<RegionMapping>& mapping() const { return map_; }
  char* data() const { return map_ == nullptr ? nullptr : map_->data(); }

 private:
  absl::Status MapAtLeast(size_t file_size);
  void Populate(size_t end, bool write);

  UniqueFd fd_;
  std::shared_ptr<RegionMapping> map_;
  size_t populated_ = 0;  // bytes of map_ already faulted in
};

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_PAYLOAD_REGION_H_
