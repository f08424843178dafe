#include "pool/runfiles.h"

#include <limits.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace procpool {
namespace {

bool IsFile(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

std::string SelfExe() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  return std::string(buf, static_cast<size_t>(n));
}

std::vector<std::string> RunfilesRoots() {
  std::vector<std::string> roots;
  for (const char* var : {"RUNFILES_DIR", "TEST_SRCDIR"}) {
    if (const char* v = std::getenv(var); v != nullptr && *v != '\0') {
      roots.emplace_back(v);
    }
  }
  std::string exe = SelfExe();
  if (!exe.empty()) roots.push_back(exe + ".runfiles");
  return roots;
}

}  // namespace

absl::StatusOr<std::string> FindRunfile(std::string_view path_view) {
  absl::string_view path(path_view.data(), path_view.size());
  std::vector<std::string> tried;
  for (const std::string& root : RunfilesRoots()) {
    for (std::string candidate :
         {absl::StrCat(root, "/procpool/", path), absl::StrCat(root, "/", path)}) {
      if (IsFile(candidate)) {
        if (candidate[0] != '/') {
          char cwd[PATH_MAX];
          if (::getcwd(cwd, sizeof(cwd)) != nullptr) {
            candidate = absl::StrCat(cwd, "/", candidate);
          }
        }
        return candidate;
      }
      tried.push_back(std::move(candidate));
    }
  }
  return absl::NotFoundError(absl::StrCat("runfile ", path, " not found; looked in ",
                                          absl::StrJoin(tried, ", ")));
}

absl::StatusOr<std::string> DefaultWorkerPath() {
  if (const char* v = std::getenv("PROCPOOL_WORKER"); v != nullptr && *v != '\0') {
    return std::string(v);
  }
  absl::StatusOr<std::string> runfile = FindRunfile("pool/procpool_worker");
  if (runfile.ok()) return runfile;
  std::string exe = SelfExe();
  if (!exe.empty()) {
    std::string sibling = exe.substr(0, exe.rfind('/') + 1) + "procpool_worker";
    if (IsFile(sibling)) return sibling;
  }
  return absl::NotFoundError(absl::StrCat(
      "cannot find the procpool_worker executable: set PoolOptions::worker_path "
      "or $PROCPOOL_WORKER, or add //pool to the program's deps so it is in "
      "its runfiles (",
      runfile.status().message(), ")"));
}

}  // namespace procpool
