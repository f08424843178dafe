#include "pool/runfiles.h"

#include <dirent.h>
#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

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

// The names of the directories directly under `root`, sorted: one per
// repository with files in the runfiles tree.
std::vector<std::string> RepositoryDirs(const std::string& root) {
  std::vector<std::string> names;
  DIR* dir = ::opendir(root.c_str());
  if (dir == nullptr) return names;
  while (const dirent* e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    if (e->d_type != DT_DIR && e->d_type != DT_LNK && e->d_type != DT_UNKNOWN) continue;
    names.push_back(std::move(name));
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

std::string Absolute(std::string path) {
  if (!path.empty() && path[0] != '/') {
    char cwd[PATH_MAX];
    if (::getcwd(cwd, sizeof(cwd)) != nullptr) path = absl::StrCat(cwd, "/", path);
  }
  return path;
}

}  // namespace

absl::StatusOr<std::string> FindRunfile(std::string_view path_view) {
  absl::string_view path(path_view.data(), path_view.size());
  // $(rootpath) and $(execpath) of a file in another repository give
  // "../repo/p" and "external/repo/p"; both are "repo/p" in the runfiles.
  bool repository_given = false;
  for (absl::string_view prefix : {"../", "external/"}) {
    if (absl::ConsumePrefix(&path, prefix)) repository_given = true;
  }
  std::vector<std::string> tried;
  for (const std::string& root : RunfilesRoots()) {
    // The repositories to look in, most likely first: the test's own
    // workspace, procpool, the path as given ("repo/p"), then every other
    // repository in the tree.
    std::vector<std::string> candidates;
    if (!repository_given) {
      if (const char* ws = std::getenv("TEST_WORKSPACE"); ws != nullptr && *ws != '\0') {
        candidates.push_back(absl::StrCat(root, "/", ws, "/", path));
      }
      candidates.push_back(absl::StrCat(root, "/procpool/", path));
    }
    candidates.push_back(absl::StrCat(root, "/", path));
    if (!repository_given) {
      for (const std::string& repo : RepositoryDirs(root)) {
        candidates.push_back(absl::StrCat(root, "/", repo, "/", path));
      }
    }
    for (std::string& candidate : candidates) {
      if (std::find(tried.begin(), tried.end(), candidate) != tried.end()) continue;
      if (IsFile(candidate)) return Absolute(std::move(candidate));
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
