// Range checks of PoolOptions, MapOptions and SubmitOptions.
//
// Every field that can be out of range is checked, and the first one found
// is named in a kInvalidArgument status together with its value and what it
// must be, e.g. "PoolOptions::max_workers is -1; it must be >= 0 (0: one
// per hardware thread)". Pure functions; thread-safe.

#ifndef PROCPOOL_POOL_INTERNAL_OPTIONS_CHECK_H_
#define PROCPOOL_POOL_INTERNAL_OPTIONS_CHECK_H_

#include <cstddef>

#include "absl/status/status.h"
#include "pool/options.h"

namespace procpool::internal {

// The smallest PoolOptions::max_frame_bytes: a frame must hold a worker's
// hello (its plugins' manifests) and a call's header with room for small
// arguments.
inline constexpr size_t kMinMaxFrameBytes = size_t{4} << 10;
// The largest: a frame's length is a 32-bit field on the wire.
inline constexpr size_t kMaxMaxFrameBytes = size_t{0xffffffff};

// OK, or kInvalidArgument naming the first field out of range. The MPI
// settings (`mpi`) are checked whatever the backend.
absl::Status ValidatePoolOptions(const PoolOptions& options);

// The PoolOptions::limits part of ValidatePoolOptions.
absl::Status ValidateWorkerLimits(const PoolOptions& options);

// OK, or kInvalidArgument naming the first field out of range.
absl::Status ValidateMapOptions(const MapOptions& options);
absl::Status ValidateSubmitOptions(const SubmitOptions& options);

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_OPTIONS_CHECK_H_
