#include "pool/internal/backend.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace procpool::internal {

absl::StatusOr<uint32_t> FindTaskIn(
    const std::vector<TaskInfo>& tasks,
    const absl::flat_hash_map<std::string, uint32_t>& index,
    const std::vector<std::string>& plugins, absl::string_view name,
    uint64_t fingerprint, absl::string_view readable) {
  auto it = index.find(name);
  if (it == index.end()) {
    std::vector<std::string> names;
    for (const TaskInfo& t : tasks) names.push_back(t.name);
    return absl::NotFoundError(absl::StrCat(
        "unknown task '", name, "': the plugins (", absl::StrJoin(plugins, ", "),
        ") register ",
        names.empty() ? std::string("no tasks")
                      : absl::StrCat("[", absl::StrJoin(names, ", "), "]")));
  }
  const TaskInfo& t = tasks[it->second];
  if (t.fingerprint != fingerprint) {
    return absl::InvalidArgumentError(absl::StrCat(
        "signature mismatch for task '", name, "': plugin ", t.plugin,
        " defines ", t.signature, ", the caller expects ", readable));
  }
  return it->second;
}

BackendFactory& MpiBackendFactory() {
  static BackendFactory factory = nullptr;
  return factory;
}

}  // namespace procpool::internal
