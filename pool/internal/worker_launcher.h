// WorkerLauncher: starts worker processes as PoolOptions::start_method
// says. kSpawn: posix_spawn of procpool_worker, every time. kZygote: a fork
// of the template (zygote.h) whenever the template is ready, a spawn
// otherwise: while a template that died is restarted (it is, up to
// kMaxTemplateDeaths times in a row without a fork served between), and for
// good once a template reports that it cannot serve (a plugin or the
// preload failed in it, or it has more than one thread). Either way a
// worker comes out the same: a child of this process with the descriptors
// asked for, in a process group of its own.
//
// Launch() and Prepare() run on one thread (the local driver's I/O thread:
// the template's death signal follows the thread that spawned it);
// Describe() and template_starts() on any.

#ifndef PROCPOOL_POOL_INTERNAL_WORKER_LAUNCHER_H_
#define PROCPOOL_POOL_INTERNAL_WORKER_LAUNCHER_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "pool/internal/child_process.h"
#include "pool/internal/zygote.h"
#include "pool/options.h"

namespace procpool::internal {

class WorkerLauncher {
 public:
  // Template deaths in a row after which the launcher only spawns.
  static constexpr int kMaxTemplateDeaths = 5;
  // How long a fork request may take before the template counts as dead.
  static constexpr absl::Duration kForkTimeout = absl::Seconds(2);

  // `options` (resolved: worker_path set) must outlive the launcher.
  explicit WorkerLauncher(const PoolOptions& options);

  // With kZygote: starts the template and waits for it, at most
  // options.start_timeout. A template that fails then is not used (the
  // workers, spawned, then report the failure themselves). Blocks.
  void Prepare();

  // Starts a worker with command line `argv` and `fds` (parent descriptor,
  // number in the worker). Errors as ChildProcess::Spawn's.
  absl::StatusOr<ChildProcess> Launch(const std::vector<std::string>& argv,
                                      const std::vector<ChildProcess::FdMapping>& fds);

  // Like Launch, but only by a fork of a ready template (for a spare
  // worker): kUnavailable when there is none.
  absl::StatusOr<ChildProcess> ForkFromTemplate(const std::vector<std::string>& argv,
                                                const std::vector<ChildProcess::FdMapping>& fds);
  // A template is in use and has said it is ready (never waits: a
  // restarted one is asked whether it is ready yet).
  bool TemplateReady();

  // PoolStats::start_method.
  std::string Describe() const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t template_starts() const { return template_starts_.load(std::memory_order_relaxed); }

 private:
  void StartTemplate();
  // The template died or hung up: start another unless it has died too
  // often; spawn meanwhile.
  void TemplateDied(const absl::Status& why);
  // Only spawns from now on.
  void GiveUp(const absl::Status& why);
  void SetDescription(std::string d) ABSL_LOCKS_EXCLUDED(mu_);

  const PoolOptions& options_;
  std::optional<WorkerTemplate> template_;
  bool given_up_ = false;
  int deaths_in_a_row_ = 0;
  std::atomic<uint64_t> template_starts_{0};
  mutable absl::Mutex mu_;
  std::string description_ ABSL_GUARDED_BY(mu_) = "spawn";
};

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_WORKER_LAUNCHER_H_
