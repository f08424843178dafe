// Loading task plugins inside a worker process (never in the pool's own
// process: a plugin that crashes while loading takes down a worker only).
//
// Not thread-safe; a worker loads its plugins once, before serving tasks.

#ifndef PROCPOOL_POOL_INTERNAL_PLUGIN_LOADER_H_
#define PROCPOOL_POOL_INTERNAL_PLUGIN_LOADER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "pool/internal/wire.h"
#include "tasks/abi.h"

namespace procpool::internal {

// A dlopen()ed shared object. The destructor dlclose()s it.
class SharedLibrary {
 public:
  // Errors: kNotFound (no such file), kInvalidArgument (not a loadable
  // shared object), with dlerror()'s text.
  static absl::StatusOr<SharedLibrary> Open(const std::string& path);

  SharedLibrary(SharedLibrary&& other) noexcept;
  SharedLibrary& operator=(SharedLibrary&& other) noexcept;
  SharedLibrary(const SharedLibrary&) = delete;
  SharedLibrary& operator=(const SharedLibrary&) = delete;
  ~SharedLibrary();

  void* Symbol(const char* name) const;
  const std::string& path() const { return path_; }

 private:
  SharedLibrary(std::string path, void* handle)
      : path_(std::move(path)), handle_(handle) {}
  std::string path_;
  void* handle_ = nullptr;
};

// All tasks of all plugins, indexed in load order.
class PluginSet {
 public:
  // Loads each plugin and checks its manifest: entry point present, ABI
  // version equal to ours, task names unique across all plugins. Errors name
  // the file (and the task): kNotFound, kInvalidArgument,
  // kFailedPrecondition (ABI mismatch), kAlreadyExists (duplicate task).
  static absl::StatusOr<PluginSet> Load(const std::vector<std::string>& paths);

  const std::vector<PluginManifest>& manifests() const { return manifests_; }
  size_t num_tasks() const { return tasks_.size(); }
  const procpool_task_v1& task(size_t i) const { return *tasks_[i]; }

 private:
  std::vector<SharedLibrary> libraries_;
  std::vector<PluginManifest> manifests_;
  std::vector<const procpool_task_v1*> tasks_;
};

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_PLUGIN_LOADER_H_
