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

// The absolute path of a file Bazel ships with the running program (listed
// in `data = [...]` of the program or of one of its dependencies), looked up
// in the program's runfiles trees: $RUNFILES_DIR, $TEST_SRCDIR and
// <this program>.runfiles. Works under `bazel run`, under `bazel test` and
// for programs started from bazel-bin/.
//
// `path` is one of:
//   - a path relative to the root of the workspace that holds the file,
//     e.g. "plugins/math/libmath.so". Looked up in every repository of the
//     runfiles tree: the test's own workspace ($TEST_WORKSPACE) first, then
//     procpool, then the others in name order. So a plugin of your own
//     workspace and the files of @procpool are both found by their path,
//     whatever the workspaces are called;
//   - "<repository>/<path>", e.g. "procpool/pool/procpool_worker" (the form
//     Bazel's runfiles libraries call rlocation);
//   - what Bazel's `rootpath` or `execpath` (in `args`, `env`...) give for a
//     file of another repository: "../<repository>/<path>" or
//     "external/<repository>/<path>".
//
// Returns kNotFound, listing the places it looked, if no such file exists.
// Reads the environment and the file system; never blocks otherwise.
absl::StatusOr<std::string> FindRunfile(std::string_view path);

// The worker executable PoolOptions::worker_path defaults to:
// $PROCPOOL_WORKER if set, else the runfile pool/procpool_worker (the
// @procpool//pool:procpool_worker target, which every program that depends
// on @procpool//pool has in its runfiles, whatever name the procpool
// repository has), else procpool_worker next to this program. kNotFound
// says how to fix it.
absl::StatusOr<std::string> DefaultWorkerPath();

}  // namespace procpool

#endif  // PROCPOOL_POOL_RUNFILES_H_
