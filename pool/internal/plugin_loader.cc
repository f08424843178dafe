#include "pool/internal/plugin_loader.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cerrno>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "pool/internal/status_macros.h"

namespace procpool::internal {

absl::StatusOr<SharedLibrary> SharedLibrary::Open(const std::string& path) {
  if (::access(path.c_str(), R_OK) != 0) {
    return ErrnoToStatus(absl::StrCat("plugin ", path), errno);
  }
  ::dlerror();
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* err = ::dlerror();
    return absl::InvalidArgumentError(
        absl::StrCat("plugin ", path, " is not a loadable shared object: ",
                     err ? err : "dlopen failed"));
  }
  return SharedLibrary(path, handle);
}

SharedLibrary::SharedLibrary(SharedLibrary&& other) noexcept
    : path_(std::move(other.path_)),
      handle_(std::exchange(other.handle_, nullptr)) {}

SharedLibrary& SharedLibrary::operator=(SharedLibrary&& other) noexcept {
  if (this != &other) {
    if (handle_ != nullptr) ::dlclose(handle_);
    path_ = std::move(other.path_);
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}

SharedLibrary::~SharedLibrary() {
  if (handle_ != nullptr) ::dlclose(handle_);
}

void* SharedLibrary::Symbol(const char* name) const {
  return ::dlsym(handle_, name);
}

absl::StatusOr<PluginSet> PluginSet::Load(
    const std::vector<std::string>& paths) {
  PluginSet set;
  // Task name -> plugin path that registered it first.
  absl::flat_hash_map<std::string, std::string> owners;
  for (const std::string& path : paths) {
    PROCPOOL_ASSIGN_OR_RETURN(SharedLibrary lib, SharedLibrary::Open(path));
    auto entry = reinterpret_cast<procpool_entry_fn>(
        lib.Symbol(PROCPOOL_ENTRY_POINT));
    if (entry == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "plugin ", path, " is not a procpool plugin: it exports no '",
          PROCPOOL_ENTRY_POINT, "' entry point (did it use PROCPOOL_PLUGIN?)"));
    }
    const procpool_manifest_v1* m = entry();
    if (m == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("plugin ", path, " returned no manifest"));
    }
    if (m->abi_version != PROCPOOL_ABI_VERSION) {
      return absl::FailedPreconditionError(absl::StrCat(
          "plugin ", path, " was built for procpool ABI version ",
          m->abi_version, ", but this worker speaks version ",
          PROCPOOL_ABI_VERSION, "; rebuild the plugin"));
    }
    PluginManifest manifest;
    manifest.path = path;
    manifest.name = m->plugin_name ? m->plugin_name : "";
    manifest.abi_version = m->abi_version;
    for (size_t i = 0; i < m->num_tasks; ++i) {
      const procpool_task_v1& t = m->tasks[i];
      auto [it, inserted] = owners.emplace(t.name, path);
      if (!inserted) {
        return absl::AlreadyExistsError(absl::StrCat(
            "task '", t.name, "' is registered twice: in ", it->second,
            it->second == path ? " (twice in the same plugin)"
                               : absl::StrCat(" and in ", path)));
      }
      manifest.tasks.push_back(TaskManifest{t.name, t.fingerprint, t.signature});
      set.tasks_.push_back(&t);
    }
    set.manifests_.push_back(std::move(manifest));
    set.libraries_.push_back(std::move(lib));
  }
  return set;
}

}  // namespace procpool::internal
