#include "pool/internal/worker_launcher.h"

#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "pool/internal/worker_command.h"

namespace procpool::internal {

WorkerLauncher::WorkerLauncher(const PoolOptions& options) : options_(options) {}

void WorkerLauncher::SetDescription(std::string d) {
  absl::MutexLock l(&mu_);
  description_ = std::move(d);
}

std::string WorkerLauncher::Describe() const {
  absl::MutexLock l(&mu_);
  return description_;
}

void WorkerLauncher::StartTemplate() {
  WorkerCommand command;
  command.zygote = true;
  command.parent = ::getpid();
  command.plugins = options_.plugins;
  command.preload_task = options_.preload.task;
  command.preload_fingerprint = options_.preload.fingerprint;
  command.preload_args = options_.preload.args;
  absl::StatusOr<WorkerTemplate> t = WorkerTemplate::Start(options_.worker_path, command);
  if (!t.ok()) return GiveUp(t.status());
  template_starts_.fetch_add(1, std::memory_order_relaxed);
  template_.emplace(*std::move(t));
}

void WorkerLauncher::Prepare() {
  if (options_.start_method != StartMethod::kZygote) return;
  StartTemplate();
  if (!template_) return;
  const absl::Status s = template_->AwaitReady(options_.start_timeout);
  if (!s.ok()) return GiveUp(s);
  SetDescription(absl::StrCat("zygote (template pid ", template_->pid(), ")"));
}

void WorkerLauncher::GiveUp(const absl::Status& why) {
  given_up_ = true;
  template_.reset();
  SetDescription(absl::StrCat("spawn (template unavailable: ", why.message(), ")"));
}

void WorkerLauncher::TemplateDied(const absl::Status& why) {
  template_.reset();
  if (++deaths_in_a_row_ >= kMaxTemplateDeaths) {
    return GiveUp(absl::UnavailableError(
        absl::StrCat("templates died ", deaths_in_a_row_, " times in a row; the last ",
                     why.message())));
  }
  SetDescription(absl::StrCat("spawn (template restarting: ", why.message(), ")"));
  StartTemplate();
}

absl::StatusOr<ChildProcess> WorkerLauncher::ForkFromTemplate(
    const std::vector<std::string>& argv, const std::vector<ChildProcess::FdMapping>& fds) {
  if (!TemplateReady()) return absl::UnavailableError("no worker template is ready");
  absl::StatusOr<ChildProcess> child = template_->Fork(argv, fds, kForkTimeout);
  if (child.ok()) {
    deaths_in_a_row_ = 0;
  } else if (absl::IsUnavailable(child.status())) {
    TemplateDied(child.status());
  }
  return child;
}

bool WorkerLauncher::TemplateReady() {
  if (!template_ || given_up_) return false;
  if (!template_->ready()) {
    // A restarted template: used once it is ready, never waited for.
    const absl::Status s = template_->AwaitReady(absl::ZeroDuration());
    if (s.ok()) {
      SetDescription(absl::StrCat("zygote (template pid ", template_->pid(), ")"));
    } else if (absl::IsUnavailable(s)) {
      TemplateDied(s);
    } else if (!absl::IsDeadlineExceeded(s)) {
      GiveUp(s);
    }
  }
  return template_ && !given_up_ && template_->ready();
}

absl::StatusOr<ChildProcess> WorkerLauncher::Launch(
    const std::vector<std::string>& argv, const std::vector<ChildProcess::FdMapping>& fds) {
  if (TemplateReady()) {
    absl::StatusOr<ChildProcess> child = ForkFromTemplate(argv, fds);
    if (child.ok()) return child;
    // Else spawning may still work (the template died, or clone failed for
    // want of memory).
  }
  return ChildProcess::Spawn(options_.worker_path, argv, fds, /*new_process_group=*/true);
}

}  // namespace procpool::internal
