#include "pool/pool.h"

#include "pool/internal/local_driver.h"

namespace procpool {

absl::StatusOr<ProcessPool> ProcessPool::Create(PoolOptions options) {
  if (options.backend == PoolBackend::kMpi) {
    internal::BackendFactory factory = internal::MpiBackendFactory();
    if (factory == nullptr) {
      return absl::FailedPreconditionError(
          "PoolBackend::kMpi needs the MPI backend: link //pool:mpi and create "
          "a procpool::mpi::Session (pool/mpi.h)");
    }
    PROCPOOL_ASSIGN_OR_RETURN(std::unique_ptr<internal::Backend> backend,
                              factory(std::move(options)));
    return ProcessPool(std::move(backend));
  }
  PROCPOOL_ASSIGN_OR_RETURN(std::unique_ptr<internal::LocalDriver> driver,
                            internal::LocalDriver::Start(std::move(options)));
  return ProcessPool(std::move(driver));
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
