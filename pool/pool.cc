#include "pool/pool.h"

namespace procpool {

absl::StatusOr<ProcessPool> ProcessPool::Create(PoolOptions options) {
  PROCPOOL_ASSIGN_OR_RETURN(std::unique_ptr<internal::PoolCore> core,
                            internal::PoolCore::Start(std::move(options)));
  return ProcessPool(std::move(core));
}

ProcessPool::ProcessPool(ProcessPool&&) noexcept = default;
ProcessPool& ProcessPool::operator=(ProcessPool&&) noexcept = default;
ProcessPool::~ProcessPool() = default;

std::vector<TaskDescription> ProcessPool::Tasks() const {
  std::vector<TaskDescription> out;
  for (const internal::TaskInfo& t : core_->tasks()) {
    out.push_back(TaskDescription{t.name, t.plugin, t.signature});
  }
  return out;
}

}  // namespace procpool
