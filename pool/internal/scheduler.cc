// The scheduler's events: start-up, submissions, exits, timers and
// shutdown. Answers and crash attribution are in scheduler_answers.cc,
// dispatch in scheduler_dispatch.cc.

#include "pool/internal/scheduler.h"

#include <signal.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "pool/internal/chunk_state.h"
#include "pool/internal/wire.h"

namespace procpool::internal {

namespace {

// Bytes a frame adds around a call's arguments, with room to spare.
constexpr size_t kCallOverhead = 64;

// How long to wait before the next start after `failures` failed ones.
absl::Duration Backoff(int failures) {
  return std::min(absl::Seconds(1),
                  absl::Milliseconds(10) * (1 << std::min(failures, 7)));
}

}  // namespace

Scheduler::Scheduler(SchedulerConfig config) : config_(std::move(config)) {
  slots_.resize(std::max<size_t>(1, config_.slots));
}

Scheduler::Worker* Scheduler::Find(WorkerId id) {
  auto it = workers_.find(id);
  return it == workers_.end() ? nullptr : it->second.get();
}

std::string Scheduler::Describe(const TaskState& t) const {
  const uint32_t task = t.task() & ~kChunkBit;
  const std::string name =
      task < task_names_.size() ? task_names_[task] : absl::StrCat("#", task);
  return DescribeTaskInput(name, t.index());
}

std::string Scheduler::DescribeItem(TaskState& t, size_t position) const {
  ChunkState* chunk = t.AsChunk();
  if (chunk == nullptr) return Describe(t);
  return chunk->DescribeItem(chunk->first_index() + position);
}

std::string Scheduler::WorkerName(const Worker& w) const {
  return config_.kind == SchedulerConfig::Kind::kAgent
             ? absl::StrCat("agent pid ", w.pid)
             : absl::StrCat("worker pid ", w.pid);
}

// ---------------------------------------------------------------------------
// Workers and slots

void Scheduler::Start(absl::Time now, Actions& out) {
  for (size_t s = 0; s < slots_.size(); ++s) SpawnSlot(s, now, out);
}

void Scheduler::SpawnSlot(size_t slot, absl::Time now, Actions& out) {
  auto w = std::make_unique<Worker>();
  w->id = next_worker_++;
  w->slot = slot;
  w->last_heard = now;
  slots_[slot].current = w->id;
  slots_[slot].respawn_pending = false;
  ArmTimer(now + config_.start_timeout, TimerKind::kStartDeadline, w->id, 0);
  Action a{Action::Kind::kSpawn};
  a.worker = w->id;
  a.slot = slot;
  out.controls.push_back(std::move(a));
  workers_.emplace(w->id, std::move(w));
}

void Scheduler::OnSpawned(WorkerId worker, int pid, ClaimTable* claims) {
  if (Worker* w = Find(worker)) {
    w->pid = pid;
    w->claims = claims;
  }
}

void Scheduler::OnSpawnFailed(WorkerId worker, absl::Status why, absl::Time now,
                              Actions& out) {
  Worker* w = Find(worker);
  if (w == nullptr || w->state == WorkerState::kGone) return;
  w->state = WorkerState::kGone;
  StartFailed(*w, why, now, out);
  workers_.erase(worker);
  MaybeCloseIdleWorkers(now, out);
}

void Scheduler::OnReady(WorkerId worker, size_t capacity, absl::Time now, Actions& out) {
  Worker* w = Find(worker);
  if (w == nullptr || w->state != WorkerState::kStarting) return;
  w->state = WorkerState::kReady;
  w->ready_once = true;
  w->capacity = std::max<size_t>(1, capacity);
  w->last_heard = now;
  w->last_answer = now;
  consecutive_start_failures_ = 0;
  HeapPush(w);
  if (config_.liveness_timeout != absl::InfiniteDuration()) {
    ArmTimer(now + config_.liveness_timeout, TimerKind::kLiveness, w->id, 0);
  }
  if (start_state_ == StartState::kStarting) {
    bool all = true;
    for (const Slot& s : slots_) {
      Worker* sw = s.current == 0 ? nullptr : Find(s.current);
      all = all && sw != nullptr && sw->state == WorkerState::kReady;
    }
    if (all) start_state_ = StartState::kStarted;
  }
  Dispatch(now, out);
  MaybeCloseIdleWorkers(now, out);
}

void Scheduler::StartFailed(Worker& w, const absl::Status& why, absl::Time now,
                            Actions& out) {
  Action note{Action::Kind::kSlotNote};
  note.slot = w.slot;
  note.text = absl::StrCat("could not start a worker: ", why.message());
  out.controls.push_back(std::move(note));
  if (slots_[w.slot].current == w.id) {
    slots_[w.slot].current = 0;
    vacancies_ = true;
  }
  if (start_state_ == StartState::kStarting) {
    start_state_ = StartState::kFailed;
    start_error_ = why;
    return;
  }
  if (++consecutive_start_failures_ >= config_.max_start_failures) {
    Break(absl::UnavailableError(absl::StrCat(
              "the pool is broken: ", consecutive_start_failures_,
              " replacement workers in a row failed to start; the last: ",
              why.message())),
          now, out);
    return;
  }
  respawn_not_before_ = now + Backoff(consecutive_start_failures_);
  SlotFreed(w.slot, now, out);
}

void Scheduler::SlotFreed(size_t slot, absl::Time now, Actions& out) {
  if (slots_[slot].current != 0) {
    slots_[slot].current = 0;
    vacancies_ = true;
  }
  FillVacancies(now, out);
}

void Scheduler::FillVacancies(absl::Time now, Actions& out) {
  if (!vacancies_ || config_.kind == SchedulerConfig::Kind::kAgent || broken_ ||
      terminated_ || start_state_ == StartState::kFailed) {
    return;
  }
  // A draining pool starts workers only for what is left to run.
  if (stopping_ && queue_.empty()) return;
  vacancies_ = false;
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    if (s.current != 0 || s.respawn_pending) continue;
    if (now < respawn_not_before_) {
      s.respawn_pending = true;
      ArmTimer(respawn_not_before_, TimerKind::kRespawn, i, 0);
    } else {
      SpawnSlot(i, now, out);
    }
  }
}

void Scheduler::StopWorker(Worker& w, std::string why, absl::Time now, Actions& out) {
  if (w.state == WorkerState::kStopping || w.state == WorkerState::kGone) return;
  HeapRemove(&w);
  w.state = WorkerState::kStopping;
  w.stopped_why = std::move(why);
  Action a{Action::Kind::kSignal};
  a.worker = w.id;
  a.signal = SIGTERM;
  out.controls.push_back(std::move(a));
  ArmTimer(now + config_.kill_grace, TimerKind::kKill, w.id, 1);
}

void Scheduler::KillWorker(Worker& w, Actions& out) {
  if (w.state == WorkerState::kGone) return;
  HeapRemove(&w);
  w.state = WorkerState::kStopping;
  Action a{Action::Kind::kSignal};
  a.worker = w.id;
  a.signal = SIGKILL;
  a.text = w.stopped_why;
  out.controls.push_back(std::move(a));
}

void Scheduler::OnHeard(WorkerId worker, absl::Time now) {
  if (Worker* w = Find(worker)) w->last_heard = now;
}

// ---------------------------------------------------------------------------
// Tasks

void Scheduler::Submit(std::shared_ptr<TaskState> task, absl::Time now, Actions& out) {
  Queue(std::move(task), out);
  Dispatch(now, out);
}

void Scheduler::SubmitMany(std::vector<std::shared_ptr<TaskState>>& tasks, absl::Time now,
                           Actions& out) {
  if (tasks.empty()) return;
  for (auto& t : tasks) Queue(std::move(t), out);
  tasks.clear();
  Dispatch(now, out);
}

void Scheduler::Queue(std::shared_ptr<TaskState> task, Actions& out) {
  if (task->Done()) {  // cancelled on its way here: never queued
    ChunkState* chunk = task->AsChunk();
    if (accepting_) {
      submitted_.fetch_add(chunk != nullptr ? chunk->size() : 1, std::memory_order_relaxed);
    }
    task->ReleaseArgs();
    return;
  }
  if (!accepting_) {
    out.resolves.push_back(ResolveAction{std::move(task), refuse_reason_, {}});
    return;
  }
  if (task->args().size() + kCallOverhead > config_.max_call_bytes) {
    absl::Status why = absl::ResourceExhaustedError(absl::StrCat(
        Describe(*task), ": its arguments are ", task->args().size(),
        " bytes, over the frame limit of ", config_.max_call_bytes,
        " bytes (PoolOptions::max_frame_bytes)"));
    out.resolves.push_back(ResolveAction{std::move(task), std::move(why), {}});
    return;
  }
  task->set_id(next_id_++);
  ChunkState* chunk = task->AsChunk();
  submitted_.fetch_add(chunk != nullptr ? chunk->size() : 1, std::memory_order_relaxed);
  queue_.push_back(std::move(task));
  queued_.fetch_add(1, std::memory_order_relaxed);
}

void Scheduler::Resolve(std::shared_ptr<TaskState> task, absl::Status status,
                        Actions& out, ResultBytes bytes) {
  if (task->Done()) return;
  if (ChunkState* chunk = task->AsChunk()) {
    const size_t failed = chunk->CountFailed(status.ok());
    failed_.fetch_add(failed, std::memory_order_relaxed);
    succeeded_.fetch_add(chunk->size() - failed, std::memory_order_relaxed);
  } else if (status.ok()) {
    succeeded_.fetch_add(1, std::memory_order_relaxed);
  } else if (!absl::IsCancelled(status)) {
    failed_.fetch_add(1, std::memory_order_relaxed);
  }
  out.resolves.push_back(ResolveAction{std::move(task), std::move(status), std::move(bytes)});
}

void Scheduler::Requeue(std::vector<std::shared_ptr<TaskState>>& tasks) {
  for (auto it = tasks.rbegin(); it != tasks.rend(); ++it) {
    queue_.push_front(std::move(*it));
    queued_.fetch_add(1, std::memory_order_relaxed);
  }
  tasks.clear();
}

void Scheduler::StopTask(uint64_t id, absl::Time now, Actions& out) {
  // Queued to run again after its worker died (so Cancel() refused).
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if ((*it)->id() != id) continue;
    std::shared_ptr<TaskState> task = std::move(*it);
    queue_.erase(it);
    queued_.fetch_sub(1, std::memory_order_relaxed);
    Resolve(task, absl::CancelledError(absl::StrCat(
                      Describe(*task), " was cancelled before it ran again")),
            out);
    return;
  }
  for (auto& [wid, wp] : workers_) {
    Worker& w = *wp;
    if (w.state == WorkerState::kGone) continue;
    Call* call = nullptr;
    if (config_.kind == SchedulerConfig::Kind::kAgent) {
      auto it = w.by_id.find(id);
      if (it != w.by_id.end()) call = &it->second;
    } else {
      for (Call& c : w.inflight) {
        if (!c.abandoned && c.task->id() == id) call = &c;
      }
    }
    if (call == nullptr || call->abandoned || call->task->Done()) continue;
    std::shared_ptr<TaskState> task = call->task;
    RemovedFromFlight(w, *call);
    call->abandoned = true;
    if (config_.kind == SchedulerConfig::Kind::kAgent) {
      Resolve(task, absl::CancelledError(absl::StrCat(
                        Describe(*task), " was cancelled; ", WorkerName(w),
                        " was told to stop it")),
              out);
      Action a{Action::Kind::kCancelRemote};
      a.worker = w.id;
      a.task = std::move(task);
      out.controls.push_back(std::move(a));
    } else if (task->Reclaim()) {
      Resolve(task, absl::CancelledError(absl::StrCat(Describe(*task),
                                                      " was cancelled before it ran")),
              out);
    } else {
      Resolve(task, absl::CancelledError(absl::StrCat(
                        Describe(*task), " was stopped while running; ",
                        WorkerName(w), " was stopped")),
              out);
      StopWorker(w, "to stop a task (Future::Terminate)", now, out);
      SlotFreed(w.slot, now, out);
    }
    HeapFix(&w);
    Dispatch(now, out);
    return;
  }
}

// ---------------------------------------------------------------------------
// Stopping

void Scheduler::ResolveEverything(const absl::Status& why, Actions& out) {
  for (auto& t : queue_) {
    Resolve(t, absl::Status(why.code(), absl::StrCat(Describe(*t), ": ", why.message())),
            out);
  }
  queue_.clear();
  queued_.store(0, std::memory_order_relaxed);
  for (auto& [id, wp] : workers_) {
    Worker& w = *wp;
    auto drop = [&](Call& c) {
      if (c.abandoned) return;
      RemovedFromFlight(w, c);
      c.abandoned = true;
      Resolve(c.task, absl::Status(why.code(), absl::StrCat(Describe(*c.task), ": ",
                                                            why.message())),
              out);
    };
    for (Call& c : w.inflight) drop(c);
    for (auto& [cid, c] : w.by_id) drop(c);
  }
}

void Scheduler::Break(absl::Status why, absl::Time now, Actions& out) {
  accepting_ = false;
  broken_ = true;
  refuse_reason_ = why;
  if (start_state_ == StartState::kStarting) {
    start_state_ = StartState::kFailed;
    start_error_ = why;
  }
  ResolveEverything(why, out);
  for (auto& [id, wp] : workers_) {
    wp->stopped_why = "the pool broke";
    KillWorker(*wp, out);
  }
  (void)now;
}

void Scheduler::Terminate(absl::Time now, Actions& out) {
  if (accepting_) {
    accepting_ = false;
    refuse_reason_ = absl::FailedPreconditionError(
        "the pool was terminated; no new tasks are accepted");
  }
  stopping_ = true;
  terminated_ = true;
  ResolveEverything(absl::CancelledError("cancelled: the pool was terminated"), out);
  for (auto& [id, wp] : workers_) {
    wp->stopped_why = "terminated with the pool";
    KillWorker(*wp, out);
  }
  (void)now;
}

void Scheduler::Shutdown(bool cancel_pending, absl::Time deadline, absl::Time now,
                         Actions& out) {
  if (accepting_) {
    accepting_ = false;
    refuse_reason_ = absl::FailedPreconditionError(
        "the pool is shut down; no new tasks are accepted");
  }
  stopping_ = true;
  if (cancel_pending) {
    for (auto& t : queue_) {
      Resolve(t, absl::CancelledError(absl::StrCat(
                     Describe(*t), " was cancelled by Shutdown() before it ran")),
              out);
    }
    queue_.clear();
    queued_.store(0, std::memory_order_relaxed);
  }
  if (deadline < shutdown_deadline_) {
    shutdown_deadline_ = deadline;
    if (deadline != absl::InfiniteFuture()) {
      ArmTimer(deadline, TimerKind::kShutdown, 0, 0);
    }
  }
  if (now >= shutdown_deadline_) Tick(now, out);
  MaybeCloseIdleWorkers(now, out);
}

void Scheduler::MaybeCloseIdleWorkers(absl::Time now, Actions& out) {
  if (!stopping_ || terminated_ || broken_) return;
  while (!queue_.empty() && queue_.front()->Done()) {
    queue_.pop_front();
    queued_.fetch_sub(1, std::memory_order_relaxed);
  }
  if (!queue_.empty()) return;
  // Agents are not replaced: while any runs calls, the others stay, in
  // case it is lost and its calls must run elsewhere.
  if (config_.kind == SchedulerConfig::Kind::kAgent &&
      inflight_calls_.load(std::memory_order_relaxed) > 0) {
    return;
  }
  for (auto& [id, wp] : workers_) {
    Worker& w = *wp;
    const bool idle = w.state == WorkerState::kStarting ||
                      (w.state == WorkerState::kReady && w.load == 0);
    if (!idle) continue;
    HeapRemove(&w);
    w.state = WorkerState::kClosing;
    w.stopped_why = "closed at the end of a drain";
    Action a{Action::Kind::kClose};
    a.worker = w.id;
    out.controls.push_back(std::move(a));
    ArmTimer(now + config_.close_grace, TimerKind::kKill, w.id, 0);
  }
}

bool Scheduler::Drained() const {
  return (stopping_ || broken_) && workers_.empty() && queue_.empty();
}

// ---------------------------------------------------------------------------
// Timers

void Scheduler::ArmTimer(absl::Time at, TimerKind kind, WorkerId worker, uint64_t check) {
  timers_.push(Timer{at, kind, worker, check});
}

absl::Time Scheduler::NextWakeup() const {
  return timers_.empty() ? absl::InfiniteFuture() : timers_.top().at;
}

void Scheduler::Tick(absl::Time now, Actions& out) {
  while (!timers_.empty() && timers_.top().at <= now) {
    Timer t = timers_.top();
    timers_.pop();
    HandleTimer(t, now, out);
  }
}

void Scheduler::HandleTimer(const Timer& t, absl::Time now, Actions& out) {
  switch (t.kind) {
    case TimerKind::kStartDeadline: {
      Worker* w = Find(t.worker);
      if (w == nullptr || w->state != WorkerState::kStarting) return;
      if (start_state_ == StartState::kStarting) {
        start_state_ = StartState::kFailed;
        start_error_ = absl::DeadlineExceededError(absl::StrCat(
            "workers did not load their plugins within ",
            absl::FormatDuration(config_.start_timeout)));
        return;
      }
      w->start_timed_out = true;
      w->stopped_why = "it did not start within start_timeout";
      KillWorker(*w, out);
      return;
    }
    case TimerKind::kKill: {
      Worker* w = Find(t.worker);
      if (w == nullptr || w->state == WorkerState::kGone) return;
      if (w->state == WorkerState::kClosing) {
        // It did not exit at the end of its input: stop it.
        w->state = WorkerState::kReady;  // so that StopWorker proceeds
        StopWorker(*w, "it did not exit after the pool closed its connection", now, out);
      } else if (w->state == WorkerState::kStopping && t.check == 1) {
        KillWorker(*w, out);
      }
      return;
    }
    case TimerKind::kTaskDeadline: {
      Worker* w = Find(t.worker);
      if (w != nullptr && w->state != WorkerState::kGone && w->running_task == t.check) {
        CheckDeadline(*w, now, out);
      }
      return;
    }
    case TimerKind::kRespawn: {
      Slot& s = slots_[t.worker];
      if (!s.respawn_pending) return;
      s.respawn_pending = false;
      vacancies_ = true;
      FillVacancies(now, out);
      return;
    }
    case TimerKind::kShutdown: {
      if (now < shutdown_deadline_ || terminated_ || broken_) return;
      cut_by_deadline_ = !queue_.empty() || inflight_calls_.load() > 0;
      ResolveEverything(
          absl::CancelledError("cancelled: the pool's shutdown deadline passed"), out);
      for (auto& [id, wp] : workers_) {
        Worker& w = *wp;
        if (w.state == WorkerState::kReady && w.inflight.empty() && w.by_id.empty()) {
          continue;  // closed below
        }
        StopWorker(w, "the pool's shutdown deadline passed", now, out);
      }
      MaybeCloseIdleWorkers(now, out);
      return;
    }
    case TimerKind::kLiveness: {
      Worker* w = Find(t.worker);
      if (w == nullptr || w->state == WorkerState::kGone) return;
      if (now - w->last_heard < config_.liveness_timeout) {
        ArmTimer(w->last_heard + config_.liveness_timeout, TimerKind::kLiveness, w->id, 0);
        return;
      }
      w->stopped_why = absl::StrCat("no message from it for ",
                                    absl::FormatDuration(now - w->last_heard));
      KillWorker(*w, out);
      return;
    }
    case TimerKind::kSteal:
      Dispatch(now, out);
      return;
    case TimerKind::kDisconnected: {
      Worker* w = Find(t.worker);
      if (w != nullptr && w->state != WorkerState::kGone) KillWorker(*w, out);
      return;
    }
  }
}

Scheduler::Counters Scheduler::counters() const {
  Counters c;
  c.submitted = submitted_.load(std::memory_order_relaxed);
  c.succeeded = succeeded_.load(std::memory_order_relaxed);
  c.failed = failed_.load(std::memory_order_relaxed);
  c.pending = queued_.load(std::memory_order_relaxed);
  c.in_flight = inflight_calls_.load(std::memory_order_relaxed);
  return c;
}

}  // namespace procpool::internal
