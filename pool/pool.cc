#include "pool/pool.h"

#include <atomic>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "pool/internal/backend.h"
#include "pool/internal/local_driver.h"
#include "pool/internal/options_check.h"
#include "pool/internal/status_macros.h"

namespace procpool {

namespace {

uint64_t NextPoolId() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

// `defaults` with the call's own timeout and retries, where it sets them.
internal::TaskPolicy PolicyFor(const internal::TaskPolicy& defaults,
                               absl::Duration timeout, int retries) {
  internal::TaskPolicy p = defaults;
  if (timeout != absl::InfiniteDuration()) p.timeout = timeout;
  if (retries >= 0) p.retries = retries;
  return p;
}

absl::Status ForeignHandle(const std::string& task_name) {
  return absl::InvalidArgumentError(absl::StrCat(
      "task handle '", task_name,
      "' belongs to another pool; get one from this pool's Task()"));
}

}  // namespace

absl::StatusOr<ProcessPool> ProcessPool::Create(PoolOptions options) {
  PROCPOOL_RETURN_IF_ERROR(internal::ValidatePoolOptions(options));
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

ProcessPool::ProcessPool(std::unique_ptr<internal::Backend> core)
    : core_(std::move(core)), id_(NextPoolId()) {}
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

bool ProcessPool::Shutdown(absl::Duration timeout, bool cancel_pending) {
  return core_->Shutdown(/*wait=*/true, cancel_pending, timeout);
}

void ProcessPool::Terminate() { core_->Terminate(); }

void ProcessPool::Shutdown(bool wait, bool cancel_pending) {
  core_->Shutdown(wait, cancel_pending, absl::InfiniteDuration());
}

int ProcessPool::num_workers() const { return core_->num_workers(); }

std::vector<int> ProcessPool::WorkerPids() const { return core_->WorkerPids(); }

PoolStats ProcessPool::Stats() const { return core_->Stats(); }

internal::Backend& ProcessPool::core_for_internal_use() const { return *core_; }

absl::StatusOr<uint32_t> ProcessPool::FindTask(std::string_view name,
                                               uint64_t fingerprint,
                                               std::string_view readable) const {
  return core_->FindTask(absl::string_view(name.data(), name.size()), fingerprint,
                         absl::string_view(readable.data(), readable.size()));
}

size_t ProcessPool::NextSubmissionIndex() { return core_->NextSubmissionIndex(); }

absl::Status ProcessPool::Enqueue(std::shared_ptr<internal::TaskState> state,
                                  const SubmitOptions& options, uint64_t task_pool,
                                  const std::string& task_name, bool wait) {
  if (task_pool != id_) {
    state->Complete(ForeignHandle(task_name));
    return absl::OkStatus();
  }
  if (absl::Status s = internal::ValidateSubmitOptions(options); !s.ok()) {
    state->Complete(std::move(s));
    return absl::OkStatus();
  }
  state->mutable_policy() =
      PolicyFor(core_->DefaultPolicy(), options.timeout, options.retries);
  if (std::shared_ptr<internal::Admission> admission = core_->admission()) {
    const bool waits = wait && !core_->MustNotWait();
    const absl::Time deadline =
        !waits ? absl::InfinitePast()
        : options.wait == absl::InfiniteDuration()
            ? absl::InfiniteFuture()
            : absl::Now() + options.wait;
    if (admission->Acquire(1, deadline) == 0) {
      absl::Status full = absl::ResourceExhaustedError(absl::StrCat(
          "the pool is full: PoolOptions::max_pending is ", admission->limit(),
          " (tasks and map items queued or running), and ",
          !waits ? "this submission does not wait for a slot"
                 : absl::StrCat("no slot freed within SubmitOptions::wait (",
                                absl::FormatDuration(options.wait), ")"),
          "; task '", task_name, "' was not queued"));
      if (!wait) return full;
      state->Complete(std::move(full));
      return absl::OkStatus();
    }
    // The slot is given back when the task resolves, however it does.
    state->OnDone([admission] { admission->Release(1); });
  }
  core_->Enqueue(std::move(state));
  return absl::OkStatus();
}

internal::MapContext ProcessPool::NewMapContext(
    uint32_t task, uint64_t task_pool, const std::string& task_name,
    const MapOptions& options) const {
  if (task_pool != id_) return internal::MapContext(ForeignHandle(task_name));
  if (absl::Status s = internal::ValidateMapOptions(options); !s.ok()) {
    return internal::MapContext(std::move(s));
  }
  return internal::MapContext(
      core_.get(), task, task_name,
      PolicyFor(core_->DefaultPolicy(), options.task_timeout, options.retries));
}

}  // namespace procpool
