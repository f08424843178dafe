#include "pool/internal/options_check.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace procpool::internal {
namespace {

// "<field> is <value>; it must be <rule>".
template <class T>
absl::Status OutOfRange(absl::string_view field, const T& value,
                        absl::string_view rule) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, " is ", value, "; it must be ", rule));
}

std::string Show(absl::Duration d) { return absl::FormatDuration(d); }

// A duration that must be positive; infinite is allowed when `infinite`
// says what it means.
absl::Status CheckPositive(absl::string_view field, absl::Duration d,
                           absl::string_view infinite) {
  if (d > absl::ZeroDuration()) return absl::OkStatus();
  return OutOfRange(field, Show(d),
                    absl::StrCat("positive (infinite: ", infinite, ")"));
}

}  // namespace

absl::Status ValidatePoolOptions(const PoolOptions& o) {
  if (o.max_workers < 0) {
    return OutOfRange("PoolOptions::max_workers", o.max_workers,
                      ">= 0 (0: one per hardware thread)");
  }
  if (o.backend != PoolBackend::kLocal && o.backend != PoolBackend::kMpi) {
    return OutOfRange("PoolOptions::backend", static_cast<int>(o.backend),
                      "PoolBackend::kLocal or PoolBackend::kMpi");
  }
  if (o.on_worker_death != WorkerDeathPolicy::kReplaceWorker &&
      o.on_worker_death != WorkerDeathPolicy::kBreakPool) {
    return OutOfRange("PoolOptions::on_worker_death",
                      static_cast<int>(o.on_worker_death),
                      "WorkerDeathPolicy::kReplaceWorker or kBreakPool");
  }
  for (size_t i = 0; i < o.plugins.size(); ++i) {
    if (o.plugins[i].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("PoolOptions::plugins[", i,
                       "] is empty; it must be a plugin's path"));
    }
  }
  if (o.initializer.task.empty() &&
      (o.initializer.fingerprint != 0 || !o.initializer.args.empty())) {
    return absl::InvalidArgumentError(
        "PoolOptions::initializer has a signature fingerprint or arguments "
        "but no task name; make it with Initializer::Of(task_ref, args...)");
  }
  if (absl::Status s = CheckPositive("PoolOptions::task_timeout",
                                     o.task_timeout, "no timeout");
      !s.ok()) {
    return s;
  }
  if (o.retries < 0) {
    return OutOfRange("PoolOptions::retries", o.retries, ">= 0");
  }
  if (o.kill_grace < absl::ZeroDuration() ||
      o.kill_grace == absl::InfiniteDuration()) {
    return OutOfRange("PoolOptions::kill_grace", Show(o.kill_grace),
                      ">= 0 and finite (0: SIGKILL at once)");
  }
  if (o.stderr_tail_lines < 0) {
    return OutOfRange("PoolOptions::stderr_tail_lines", o.stderr_tail_lines,
                      ">= 0");
  }
  if (absl::Status s =
          CheckPositive("PoolOptions::start_timeout", o.start_timeout,
                        "wait as long as it takes");
      !s.ok()) {
    return s;
  }
  if (o.max_frame_bytes < kMinMaxFrameBytes ||
      o.max_frame_bytes > kMaxMaxFrameBytes) {
    return OutOfRange(
        "PoolOptions::max_frame_bytes", o.max_frame_bytes,
        absl::StrCat("between ", kMinMaxFrameBytes,
                     " (room for a message's header and a worker's hello) and ",
                     kMaxMaxFrameBytes, " (a frame's length has 32 bits)"));
  }
  if (o.mpi.heartbeat_interval <= absl::ZeroDuration() ||
      o.mpi.heartbeat_interval == absl::InfiniteDuration()) {
    return OutOfRange("PoolOptions::mpi.heartbeat_interval",
                      Show(o.mpi.heartbeat_interval), "positive and finite");
  }
  if (absl::Status s =
          CheckPositive("PoolOptions::mpi.agent_timeout", o.mpi.agent_timeout,
                        "agents are never lost");
      !s.ok()) {
    return s;
  }
  if (o.mpi.agent_timeout <= o.mpi.heartbeat_interval) {
    return OutOfRange(
        "PoolOptions::mpi.agent_timeout", Show(o.mpi.agent_timeout),
        absl::StrCat("longer than mpi.heartbeat_interval (",
                     Show(o.mpi.heartbeat_interval),
                     "), or an idle agent is lost between two heartbeats"));
  }
  if (o.sandbox_on_denied != SandboxDenial::kFailCall &&
      o.sandbox_on_denied != SandboxDenial::kStopWorker) {
    return OutOfRange("PoolOptions::sandbox_on_denied",
                      static_cast<int>(o.sandbox_on_denied),
                      "SandboxDenial::kFailCall or SandboxDenial::kStopWorker");
  }
  for (size_t i = 0; i < o.sandbox_paths.size(); ++i) {
    if (o.sandbox_paths[i].path.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "PoolOptions::sandbox_paths[", i, "].path is empty; it must be a path"));
    }
  }
  if (!o.sandbox && (!o.sandbox_paths.empty() ||
                     o.sandbox_on_denied != SandboxDenial::kFailCall ||
                     o.sandbox_max_file_bytes > 0 || o.sandbox_max_processes > 0 ||
                     o.sandbox_network_namespace)) {
    return absl::InvalidArgumentError(
        "PoolOptions::sandbox is false, but sandbox_paths, sandbox_on_denied, "
        "sandbox_max_file_bytes, sandbox_max_processes or "
        "sandbox_network_namespace is set; they apply "
        "only with sandbox = true");
  }
  if (o.start_method != StartMethod::kSpawn && o.start_method != StartMethod::kZygote) {
    return OutOfRange("PoolOptions::start_method", static_cast<int>(o.start_method),
                      "StartMethod::kSpawn or StartMethod::kZygote");
  }
  if (o.preload.task.empty() && (o.preload.fingerprint != 0 || !o.preload.args.empty())) {
    return absl::InvalidArgumentError(
        "PoolOptions::preload has a signature fingerprint or arguments "
        "but no task name; make it with Initializer::Of(task_ref, args...)");
  }
  if (o.backend == PoolBackend::kMpi &&
      (o.start_method != StartMethod::kSpawn || !o.preload.task.empty())) {
    return absl::InvalidArgumentError(
        "PoolOptions::start_method kZygote or a preload with PoolBackend::kMpi; "
        "MPI agents spawn their workers and run no preload (use PoolBackend::kLocal)");
  }
  if (o.sandbox && o.backend == PoolBackend::kMpi) {
    return absl::InvalidArgumentError(
        "PoolOptions::sandbox is true with PoolBackend::kMpi; the MPI backend "
        "does not sandbox its workers yet (use PoolBackend::kLocal)");
  }
  if (o.max_pending < 0) {
    return OutOfRange("PoolOptions::max_pending", o.max_pending,
                      ">= 0 (0: no bound)");
  }
  if (absl::Status s = ValidateWorkerLimits(o); !s.ok()) return s;
  return absl::OkStatus();
}

// ---- Hard limits per worker (PoolOptions::limits) ----
absl::Status ValidateWorkerLimits(const PoolOptions& o) {
  const WorkerLimits& l = o.limits;
  if (l.memory_bytes != 0 && l.memory_bytes < (uint64_t{16} << 20)) {
    return OutOfRange("PoolOptions::limits.memory_bytes", l.memory_bytes,
                      "0 (no limit) or at least 16 MiB (16777216)");
  }
  if (l.memory_mechanism != MemoryLimitMechanism::kAuto &&
      l.memory_mechanism != MemoryLimitMechanism::kCgroup &&
      l.memory_mechanism != MemoryLimitMechanism::kRlimit) {
    return OutOfRange("PoolOptions::limits.memory_mechanism",
                      static_cast<int>(l.memory_mechanism),
                      "MemoryLimitMechanism::kAuto, kCgroup or kRlimit");
  }
  if (l.cpu_per_task != absl::InfiniteDuration() &&
      (l.cpu_per_task < absl::Milliseconds(10) || l.cpu_per_task > absl::Hours(24))) {
    return OutOfRange("PoolOptions::limits.cpu_per_task", Show(l.cpu_per_task),
                      "from 10ms to 24h (infinite: no limit)");
  }
  if (l.open_files != 0 && (l.open_files < 16 || l.open_files > (uint64_t{1} << 20))) {
    return OutOfRange("PoolOptions::limits.open_files", l.open_files,
                      "0 (unchanged) or 16 to 1048576 (the worker's own descriptors "
                      "count)");
  }
  const bool any = l.memory_bytes != 0 || l.cpu_per_task != absl::InfiniteDuration() ||
                   l.open_files != 0;
  if (any && o.backend == PoolBackend::kMpi) {
    return absl::InvalidArgumentError(
        "PoolOptions::limits is set with PoolBackend::kMpi; the MPI backend "
        "does not limit its workers yet (use PoolBackend::kLocal)");
  }
  return absl::OkStatus();
}

absl::Status ValidateMapOptions(const MapOptions& o) {
  if (o.chunksize < 0) {
    return OutOfRange("MapOptions::chunksize", o.chunksize,
                      ">= 0 (0: automatic)");
  }
  if (absl::Status s = CheckPositive("MapOptions::timeout", o.timeout, "none");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckPositive("MapOptions::task_timeout", o.task_timeout,
                                     "PoolOptions::task_timeout");
      !s.ok()) {
    return s;
  }
  if (o.retries < -1) {
    return OutOfRange("MapOptions::retries", o.retries,
                      ">= -1 (-1: PoolOptions::retries)");
  }
  if (o.progress && o.progress_fd < 0) {
    return OutOfRange(
        "MapOptions::progress_fd", o.progress_fd,
        "a file descriptor (>= 0) when MapOptions::progress is set");
  }
  return absl::OkStatus();
}

absl::Status ValidateSubmitOptions(const SubmitOptions& o) {
  if (absl::Status s = CheckPositive("SubmitOptions::timeout", o.timeout,
                                     "PoolOptions::task_timeout");
      !s.ok()) {
    return s;
  }
  if (o.retries < -1) {
    return OutOfRange("SubmitOptions::retries", o.retries,
                      ">= -1 (-1: PoolOptions::retries)");
  }
  if (o.wait < absl::ZeroDuration()) {
    return OutOfRange("SubmitOptions::wait", Show(o.wait),
                      ">= 0 (0: do not wait; infinite: until a slot frees)");
  }
  return absl::OkStatus();
}

}  // namespace procpool::internal
