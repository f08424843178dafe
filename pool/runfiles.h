// Finding files that Bazel ships with a program (its runfiles): plugins
// listed in `data = [...]`, and the worker executable.
//
// Thread-safe.

#ifndef PROCPOOL_POOL_RUNFILES_H_
#define PROCPOOL_POOL_RUNFILES_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace procpool {

// The absolute path of `path`, a file of the procpool workspace given
// relative to its root (e.g. "plugins/math/libmath.so"), looked up in the
// runfiles of the running program: under $RUNFILES_DIR, $TEST_SRCDIR, and
// <this program>.runfiles, each as <root>/procpool/<path> or
// <root>/<path>. Works under `bazel run`, `bazel test` and for programs
// started from bazel-bin. kNotFound lists the places it looked.
absl::StatusOr<std::string> FindRunfile(std::string_view path);

// The worker executable: $PROCPOOL_WORKER if set, else the runfile
// pool/procpool_worker, else procpool_worker next to this program.
absl::StatusOr<std::string> DefaultWorkerPath();

}  // namespace procpool

#endif  // PROCPOOL_POOL_RUNFILES_H_
