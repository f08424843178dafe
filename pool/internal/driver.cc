#include "pool/internal/driver.h"

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"

namespace procpool::internal {

namespace {

// Set while this thread completes tasks in Execute (and so runs their
// done-callbacks): a Submit there must not wait for a slot.
thread_local int t_resolving = 0;

std::shared_ptr<Admission> AdmissionFor(const PoolOptions& o) {
  if (o.max_pending <= 0) return nullptr;
  return std::make_shared<Admission>(static_cast<size_t>(o.max_pending));
}

}  // namespace

Driver::Driver(PoolOptions options, SchedulerConfig config)
    : options_(std::move(options)),
      admission_(AdmissionFor(options_)),
      sched_(std::move(config)) {}

bool Driver::MustNotWait() const { return t_resolving > 0; }

Driver::~Driver() {
  if (cancel_channel_) cancel_channel_->Detach();
}

void Driver::MakeCancelChannel(CancelChannel::WaitSink wait_sink,
                               CancelChannel::WatchSink watch_sink) {
  cancel_channel_ = std::make_shared<CancelChannel>(
      [this](uint64_t id) {
        {
          absl::MutexLock l(&mu_);
          stop_requests_.push_back(id);
        }
        Wake();
      },
      std::move(wait_sink), std::move(watch_sink));
}

void Driver::Adopt(TaskState& t) const {
  t.set_cancel_channel(cancel_channel_);
  t.set_callback_errors(callback_errors_);
}

// ---------------------------------------------------------------------------
// Callers

absl::StatusOr<uint32_t> Driver::FindTask(absl::string_view name, uint64_t fingerprint,
                                          absl::string_view readable) const {
  return FindTaskIn(tasks_, task_index_, options_.plugins, name, fingerprint, readable);
}

void Driver::EnqueueMany(std::vector<std::shared_ptr<TaskState>>& tasks) {
  for (auto& t : tasks) Adopt(*t);
  absl::Status refused;
  {
    absl::MutexLock l(&mu_);
    if (accepting_) {
      for (auto& t : tasks) intake_.push_back(std::move(t));
      tasks.clear();
      queued_hint_.store(true, std::memory_order_relaxed);
    } else {
      refused = refuse_reason_;
    }
  }
  const bool refusing = !tasks.empty();
  for (auto& t : tasks) t->Cancel(refused);
  tasks.clear();
  if (refusing || intake_wakes_.load(std::memory_order_acquire)) Wake();
}

bool Driver::Shutdown(bool wait, bool cancel_pending, absl::Duration timeout) {
  {
    absl::MutexLock l(&mu_);
    if (accepting_) {
      accepting_ = false;
      refuse_reason_ = absl::FailedPreconditionError(
          "the pool is shut down; no new tasks are accepted");
    }
    shutdown_requested_ = true;
    cancel_pending_ = cancel_pending_ || cancel_pending;
    // Wake submitters waiting for a slot: what they queue is refused now.
    if (admission_) admission_->Close();
    if (timeout != absl::InfiniteDuration()) {
      shutdown_deadline_ = std::min(shutdown_deadline_, absl::Now() + timeout);
    }
  }
  Wake();
  if (!wait) return true;
  absl::MutexLock l(&mu_);
  mu_.Await(absl::Condition(&io_done_));
  return !cut_by_deadline_;
}

void Driver::Terminate() {
  {
    absl::MutexLock l(&mu_);
    if (accepting_) {
      accepting_ = false;
      refuse_reason_ = absl::FailedPreconditionError(
          "the pool was terminated; no new tasks are accepted");
    }
    terminate_requested_ = true;
    terminated_ = true;
    if (admission_) admission_->Close();
  }
  Wake();
  absl::MutexLock l(&mu_);
  mu_.Await(absl::Condition(&io_done_));
}

void Driver::DrainForDestruction() {
  {
    absl::MutexLock l(&mu_);
    if (io_done_ || terminated_) return;
  }
  // Python's `with` block and C++ executors drain: so does the pool.
  Shutdown(/*wait=*/true, /*cancel_pending=*/false, absl::InfiniteDuration());
}

absl::Status Driver::AwaitStarted() {
  absl::Status error;
  {
    absl::MutexLock l(&mu_);
    auto started = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return start_state_ != Scheduler::StartState::kStarting || io_done_;
    };
    mu_.Await(absl::Condition(&started));
    if (start_state_ != Scheduler::StartState::kStarted) {
      error = start_error_.ok() ? absl::InternalError("the pool stopped while starting")
                                : start_error_;
    }
  }
  if (!error.ok()) Terminate();
  return error;
}

size_t Driver::SuggestedChunkSize() const {
  return Scheduler::MapChunkFor(sched_.avg_task_ns(), sched_.avg_result_bytes());
}

size_t Driver::SuggestedWindow(size_t chunksize) const {
  return Scheduler::MapWindowFor(sched_.avg_task_ns(), sched_.avg_result_bytes(), chunksize,
                                 Processes());
}

size_t Driver::max_chunk_bytes() const {
  return std::min<size_t>(size_t{64} << 10, options_.max_frame_bytes / 4);
}

void Driver::AddCounters(PoolStats& out) const {
  const Scheduler::Counters c = sched_.counters();
  out.submitted = c.submitted;
  out.succeeded = c.succeeded;
  out.failed = c.failed;
  out.pending = c.pending;
  out.in_flight = c.in_flight;
  out.callback_errors = callback_errors_->load(std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------
// The I/O thread

void Driver::SetTasks(std::vector<TaskInfo> tasks) {
  tasks_ = std::move(tasks);
  task_index_.clear();
  std::vector<std::string> names;
  for (uint32_t i = 0; i < tasks_.size(); ++i) {
    task_index_[tasks_[i].name] = i;
    names.push_back(tasks_[i].name);
  }
  sched_.SetTaskNames(std::move(names));
}

bool Driver::TakeRequests(absl::Time now) {
  std::vector<std::shared_ptr<TaskState>> intake;
  std::vector<uint64_t> stops;
  bool shutdown, cancel_pending, terminate;
  absl::Time deadline;
  {
    absl::MutexLock l(&mu_);
    intake.swap(intake_);
    stops.swap(stop_requests_);
    shutdown = std::exchange(shutdown_requested_, false);
    terminate = std::exchange(terminate_requested_, false);
    cancel_pending = cancel_pending_;
    deadline = shutdown_deadline_;
  }
  sched_.SubmitMany(intake, now, actions_);
  for (uint64_t id : stops) sched_.StopTask(id, now, actions_);
  if (terminate) {
    sched_.Terminate(now, actions_);
  } else if (shutdown) {
    sched_.Shutdown(cancel_pending, deadline, now, actions_);
  }
  queued_hint_.store(!sched_.QueueEmpty(), std::memory_order_relaxed);
  return shutdown || terminate;
}

bool Driver::RequestsPendingLocked() const {
  return !intake_.empty() || !stop_requests_.empty() || shutdown_requested_ ||
         terminate_requested_;
}

void Driver::Publish() {
  absl::MutexLock l(&mu_);
  start_state_ = sched_.start_state();
  start_error_ = sched_.start_error();
  cut_by_deadline_ = sched_.cut_by_deadline();
  if (!sched_.accepting() && accepting_) {
    // Broken (kBreakPool, or workers that cannot start): refuse at once.
    accepting_ = false;
    refuse_reason_ = sched_.refuse_reason();
    if (admission_) admission_->Close();
  }
}

void Driver::IoThreadDone() {
  {
    absl::MutexLock l(&mu_);
    io_done_ = true;
  }
  if (admission_) admission_->Close();
}

void Driver::Execute() {
  while (!actions_.empty()) {
    Actions a;
    std::swap(a, actions_);
    WriteSends(a.sends);
    for (const Action& c : a.controls) Control(c);
    ++t_resolving;
    for (ResolveAction& r : a.resolves) {
      // The arguments go first: whoever waits may decode a large result
      // at once.
      r.task->ReleaseArgs();
      r.task->Complete(std::move(r.status), std::move(r.bytes));
    }
    --t_resolving;
    // Keep the capacity for next time.
    a.sends.clear();
    a.controls.clear();
    a.resolves.clear();
    if (actions_.empty()) std::swap(a, actions_);
  }
  if (sched_.Saturated()) {
    intake_wakes_.store(false, std::memory_order_release);
  } else if (!intake_wakes_.exchange(true, std::memory_order_acq_rel)) {
    // A caller that read `false` queued without waking this thread, maybe
    // after it took the intake for the last time: nothing is out, so no
    // answer would bring it back. What such a caller queued is taken now.
    bool queued;
    {
      absl::MutexLock l(&mu_);
      queued = !intake_.empty();
    }
    if (queued) Wake();
  }
}

}  // namespace procpool::internal
