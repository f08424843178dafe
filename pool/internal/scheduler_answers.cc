// The scheduler's view of what workers say and do: answers, what they run
// (time limits), and their exits, with crash attribution: which call, and
// which item of a chunk, a dead worker is blamed on.

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "pool/internal/chunk_state.h"
#include "pool/internal/scheduler.h"
#include "pool/internal/wire.h"

namespace procpool::internal {

namespace {

// The error of a task (or item) whose worker died under it: once, or as a
// poison task after several deaths. Each entry of `crashes` says how one
// worker died and when ("... while running it").
std::string CrashMessage(const std::string& what,
                         const std::vector<std::string>& crashes,
                         const std::string& tail) {
  if (crashes.size() <= 1) {
    return absl::StrCat(what, " failed: ", crashes.empty() ? "" : crashes[0], tail);
  }
  std::string message = absl::StrCat("poison task: ", what, " killed ", crashes.size(),
                                     " workers and is not retried again:");
  for (size_t i = 0; i < crashes.size(); ++i) {
    absl::StrAppend(&message, " [", i + 1, "] ", crashes[i], ";");
  }
  message.pop_back();
  message += tail;
  return message;
}

}  // namespace

// ---------------------------------------------------------------------------
// Answers

void Scheduler::OnAnswers(WorkerId worker, std::vector<Answer>& answers, absl::Time now,
                          Actions& out) {
  Worker* w = Find(worker);
  if (w == nullptr || w->state == WorkerState::kGone) return;
  w->last_answer = now;
  w->last_heard = now;
  std::vector<std::shared_ptr<TaskState>> requeue;
  uint64_t total_ns = 0, total_bytes = 0;
  size_t items = 0;
  for (Answer& a : answers) {
    Call call;
    if (config_.kind == SchedulerConfig::Kind::kAgent) {
      auto node = w->by_id.extract(a.id);
      if (node.empty()) continue;  // resolved and forgotten here already
      call = std::move(node.mapped());
    } else {
      if (w->inflight.empty() || w->inflight.front().task->id() != a.id) {
        OnProtocolError(worker, absl::DataLossError(absl::StrCat(
                                    "protocol error from worker: it answered task id ",
                                    a.id, " out of order")),
                        now, out);
        break;
      }
      call = std::move(w->inflight.front());
      w->inflight.pop_front();
    }
    RemovedFromFlight(*w, call);
    if (a.code == static_cast<uint8_t>(ResultCode::kSkipped) && w->dispatched > 0) {
      --w->dispatched;  // it does not count towards max_tasks_per_child
    }
    // A call whose fate was decided already (resolved, or taken back and
    // perhaps sent elsewhere): its answer is dropped.
    if (call.abandoned) continue;
    ChunkState* chunk = call.task->AsChunk();
    const size_t before = chunk != nullptr ? chunk->unanswered() : 1;
    const uint64_t bytes = a.bytes.view().size();
    TakeAnswer(*w, std::move(call), a, requeue, out);
    if (a.code != static_cast<uint8_t>(ResultCode::kSkipped)) {
      total_ns += a.run_ns;
      total_bytes += bytes;
      items += chunk != nullptr ? before - chunk->unanswered() : 1;
    }
  }
  Requeue(requeue);
  if (items > 0) {
    const auto fold = [](std::atomic<uint64_t>& avg, uint64_t sample) {
      const uint64_t old = avg.load(std::memory_order_relaxed);
      avg.store(old == 0 ? sample : (old * 7 + sample) / 8, std::memory_order_relaxed);
    };
    fold(avg_ns_, std::max<uint64_t>(1, total_ns / items));
    fold(avg_bytes_, std::max<uint64_t>(1, total_bytes / items));
  }
  HeapFix(w);
  Dispatch(now, out);
  MaybeCloseIdleWorkers(now, out);
}

void Scheduler::TakeAnswer(Worker& w, Call call, Answer& a,
                           std::vector<std::shared_ptr<TaskState>>& requeue,
                           Actions& out) {
  std::shared_ptr<TaskState>& t = call.task;
  if (t->Done()) {  // cancelled, stopped or timed out meanwhile
    t->ReleaseArgs();
    return;
  }
  if (a.code == static_cast<uint8_t>(ResultCode::kSkipped)) {
    // Skipped: the worker never ran it. Only a claim taken back makes a
    // worker skip, and whoever took it already decided the task's fate;
    // should it still be in flight, it runs again.
    if (t->Requeue()) requeue.push_back(std::move(t));
    return;
  }
  ChunkState* chunk = t->AsChunk();
  if (chunk != nullptr && a.code == static_cast<uint8_t>(ResultCode::kOk)) {
    size_t n = 0;
    // A chunk of one item keeps a borrowed answer as a single call does
    // (its consumer lets it go with the item); a larger chunk's answers
    // are read over a while, so they are copied and their region freed.
    absl::StatusOr<bool> all = chunk->Accept(
        chunk->size() == 1 ? std::move(a.bytes) : ResultBytes(std::move(a.bytes).TakeOwned()),
        &n);
    if (!all.ok()) {
      Resolve(t, absl::DataLossError(absl::StrCat(Describe(*t),
                                                  ": worker answered a malformed chunk: ",
                                                  all.status().message())),
              out);
      if (w.protocol_error.ok()) {
        w.protocol_error = all.status();
        KillWorker(w, out);
      }
      return;
    }
    if (*all) {
      Resolve(t, absl::OkStatus(), out);
    } else if (t->Requeue()) {
      requeue.push_back(std::move(t));  // the rest, once more
    }
    return;
  }
  if (a.code == static_cast<uint8_t>(ResultCode::kOk)) {
    Resolve(t, absl::OkStatus(), out, std::move(a.bytes));
  } else {
    Resolve(t, AnswerStatus(a.code, a.bytes.view(), Describe(*t)), out);
  }
}

void Scheduler::OnProtocolError(WorkerId worker, absl::Status why, absl::Time now,
                                Actions& out) {
  Worker* w = Find(worker);
  if (w == nullptr || w->state == WorkerState::kGone) return;
  if (w->protocol_error.ok()) w->protocol_error = std::move(why);
  KillWorker(*w, out);
  SlotFreed(w->slot, now, out);
}

void Scheduler::OnDisconnected(WorkerId worker, absl::Time now, Actions& out) {
  Worker* w = Find(worker);
  if (w == nullptr || w->state == WorkerState::kGone) return;
  HeapRemove(w);
  w->disconnected = true;
  // A worker that exits gets a moment to do so, so that its own exit status
  // is reported. Its slot stays its own until then: the replacement starts
  // after the task it ran has failed, never in between.
  ArmTimer(now + kExitAfterDisconnect, TimerKind::kDisconnected, w->id, 0);
  MaybeCloseIdleWorkers(now, out);
}

// ---------------------------------------------------------------------------
// What a worker runs: time limits

void Scheduler::Observe(WorkerId worker, uint64_t running_task, uint32_t running_item,
                        absl::Time since) {
  Worker* w = Find(worker);
  if (w == nullptr || w->state == WorkerState::kGone) return;
  if (running_task == w->running_task && running_item == w->running_item &&
      since == w->running_since) {
    return;
  }
  w->running_task = running_task;
  w->running_item = running_item;
  w->running_since = since;
  if (running_task == 0) return;
  for (const Call& c : w->inflight) {
    // A call taken back from this worker may have been sent to it again.
    if (c.abandoned || c.task->id() != running_task) continue;
    const absl::Duration limit = c.task->policy().timeout;
    if (limit != absl::InfiniteDuration()) {
      ArmTimer(since + limit, TimerKind::kTaskDeadline, w->id, running_task);
    }
    return;
  }
}

void Scheduler::CheckDeadline(Worker& w, absl::Time now, Actions& out) {
  Call* call = nullptr;
  for (Call& c : w.inflight) {
    if (!c.abandoned && c.task->id() == w.running_task) {
      call = &c;
      break;
    }
  }
  if (call == nullptr || call->task->Done()) return;
  const absl::Duration limit = call->task->policy().timeout;
  if (limit == absl::InfiniteDuration() || now < w.running_since + limit) return;
  std::shared_ptr<TaskState> task = call->task;
  RemovedFromFlight(w, *call);
  call->abandoned = true;
  ChunkState* chunk = task->AsChunk();
  const size_t k =
      chunk == nullptr ? 0 : std::min<size_t>(w.running_item, chunk->unanswered() - 1);
  absl::Status why = absl::ResourceExhaustedError(absl::StrCat(
      DescribeItem(*task, chunk == nullptr ? 0 : chunk->UnansweredPosition(k)),
      " ran past its time limit of ", absl::FormatDuration(limit), "; ",
      WorkerName(w), " was stopped"));
  if (chunk == nullptr) {
    Resolve(task, std::move(why), out);
  } else if (chunk->FailRunning(k, std::move(why))) {
    Resolve(task, absl::OkStatus(), out);
  } else if (task->Requeue(/*ran=*/true)) {
    // The items before it ran but their answers go with the worker; they
    // and those after it run again elsewhere.
    std::vector<std::shared_ptr<TaskState>> again{std::move(task)};
    Requeue(again);
  }
  StopWorker(w, "a task ran past its time limit", now, out);
  SlotFreed(w.slot, now, out);
  Dispatch(now, out);
}

// ---------------------------------------------------------------------------
// Exits

void Scheduler::OnExit(WorkerId worker, const WorkerExit& exit, absl::Time now,
                       Actions& out) {
  Worker* w = Find(worker);
  if (w == nullptr || w->state == WorkerState::kGone) return;
  HeapRemove(w);
  w->state = WorkerState::kGone;
  const size_t slot = w->slot;
  if (!w->ready_once) {
    absl::Status why = exit.hello_error;
    if (w->start_timed_out) {
      why = absl::DeadlineExceededError(absl::StrCat(
          WorkerName(*w), " did not load its plugins within start_timeout (",
          absl::FormatDuration(config_.start_timeout), ")", exit.stderr_tail));
    } else if (why.ok()) {
      why = absl::InternalError(absl::StrCat(WorkerName(*w), " ", exit.how,
                                             " before it was ready", exit.stderr_tail));
    }
    // Killed from outside before it was ready: that says nothing about
    // whether workers can start (unless the pool is starting). Stopped by
    // the pool on purpose (a drain, Terminate): nothing to count either.
    const bool external = exit.killed && exit.hello_error.ok() && w->stopped_why.empty();
    const bool deliberate = !w->stopped_why.empty() && !w->start_timed_out;
    if ((external && start_state_ != StartState::kStarting) || deliberate) {
      if (slots_[slot].current == w->id) SlotFreed(slot, now, out);
    } else {
      StartFailed(*w, why, now, out);
    }
    workers_.erase(worker);
    MaybeCloseIdleWorkers(now, out);
    return;
  }
  HandleExit(*w, exit, now, out);
  if (slots_[slot].current == worker) SlotFreed(slot, now, out);
  workers_.erase(worker);
  Dispatch(now, out);
  MaybeCloseIdleWorkers(now, out);
}

void Scheduler::HandleExit(Worker& w, const WorkerExit& exit, absl::Time now,
                           Actions& out) {
  const bool retired = exit.retired != RetireReason::kNone && exit.exited_zero;
  const bool stopped = !w.stopped_why.empty() && w.protocol_error.ok();
  std::string how = absl::StrCat(WorkerName(w), " ", exit.how);
  if (retired && exit.retired == RetireReason::kMaxTasks) {
    how = absl::StrCat(WorkerName(w), " retired after ", exit.tasks_done,
                       " tasks (max_tasks_per_child)");
  } else if (retired) {
    how = absl::StrCat(WorkerName(w), " retired: resident memory ", exit.rss_bytes >> 20,
                       " MiB over the limit of ", exit.rss_limit >> 20, " MiB");
  } else if (!w.protocol_error.ok()) {
    how = absl::StrCat(WorkerName(w), " was stopped (", w.protocol_error.message(), ")");
  } else if (stopped) {
    how = absl::StrCat(WorkerName(w), " stopped by the pool: ", w.stopped_why, " (",
                       exit.how, ")");
  } else if (!exit.limit.empty()) {
    how = absl::StrCat(WorkerName(w), " ", exit.limit, " (", exit.how, ")");
  }
  Action note{Action::Kind::kSlotNote};
  note.slot = w.slot;
  note.text = how;
  note.restart = true;
  out.controls.push_back(std::move(note));

  std::vector<Call> calls;
  for (Call& c : w.inflight) calls.push_back(std::move(c));
  for (auto& [id, c] : w.by_id) calls.push_back(std::move(c));
  w.inflight.clear();
  w.by_id.clear();
  for (Call& c : calls) RemovedFromFlight(w, c);
  std::vector<std::shared_ptr<TaskState>> requeue;

  if (config_.kind == SchedulerConfig::Kind::kAgent) {
    // A lost agent: what it held runs again elsewhere (not counted against
    // retries: agents are not replaced, so this ends), or fails.
    std::sort(calls.begin(), calls.end(),
              [](const Call& a, const Call& b) { return a.task->id() < b.task->id(); });
    const bool again = config_.requeue_on_loss && ready_count_ > 0;
    for (Call& c : calls) {
      if (c.abandoned || c.task->Done()) continue;
      if (again) {
        if (c.task->Requeue(/*ran=*/true)) requeue.push_back(std::move(c.task));
      } else {
        Resolve(c.task, absl::AbortedError(absl::StrCat(Describe(*c.task), " failed: ",
                                                        how, " while it ran there")),
                out);
      }
    }
    Requeue(requeue);
    // Agents are not replaced: with none left, what is queued (or what
    // would be submitted) cannot run. An agent that stopped cleanly at the
    // end of a drain leaves nothing behind.
    const bool lost = !exit.exited_zero;
    if (lost && ready_count_ == 0 && !broken_ && !terminated_ &&
        (!stopping_ || !queue_.empty())) {
      Break(absl::UnavailableError(absl::StrCat("every MPI agent rank is lost; the last: ",
                                                how)),
            now, out);
    }
    return;
  }

  // Which call to blame: the one it was running when it died; else, when it
  // died between calls, the last one it started (it ran, and the worker
  // died before its answer went out). Never a call it had not started, nor
  // one the pool already decided about, nor anything when the pool stopped
  // it or it retired.
  const bool protocol = !w.protocol_error.ok();
  Call* victim = nullptr;
  bool after_return = false;
  if (!retired && (!stopped || protocol)) {
    for (Call& c : calls) {
      if (c.abandoned || c.task->Done()) continue;
      if (exit.running_task != 0) {
        if (c.task->id() == exit.running_task) {
          victim = &c;
          break;
        }
      } else if (protocol) {
        victim = &c;  // the oldest it had not answered
        break;
      } else if (w.claims != nullptr && w.claims->Started(c.seq)) {
        victim = &c;  // the last it started
        after_return = true;
      }
    }
  }
  // A hard limit (PoolOptions::limits) fails its task alone, as a time
  // limit does: kResourceExhausted, not retried, the pool not broken.
  const bool limit = !exit.limit.empty() && !protocol && !stopped && !retired;
  const bool break_pool = config_.on_worker_death == WorkerDeathPolicy::kBreakPool &&
                          victim != nullptr && !protocol && !limit;
  for (Call& c : calls) {
    if (c.abandoned || c.task->Done()) continue;
    if (&c != victim) {
      const bool ran = w.claims != nullptr && w.claims->Started(c.seq);
      if (c.task->Requeue(ran)) requeue.push_back(std::move(c.task));
      continue;
    }
    ChunkState* chunk = c.task->AsChunk();
    if (after_return && chunk != nullptr && c.items != 1 && chunk->unanswered() > 1) {
      // It died after running several items of this chunk: which one did
      // it is unknown. Run them one per call from now on, so that the next
      // such death names its item; this one is counted against none.
      chunk->one_item_per_call = true;
      if (c.task->Requeue(/*ran=*/true)) requeue.push_back(std::move(c.task));
      continue;
    }
    const size_t k = after_return ? 0 : exit.running_item;
    const std::string when = protocol     ? ""
                             : after_return ? " after running it, before its answer was sent"
                                            : " while running it";
    CrashItem(c, k, how + when, exit.stderr_tail,
              protocol ? w.protocol_error.code()
              : limit  ? absl::StatusCode::kResourceExhausted
                       : absl::StatusCode::kAborted,
              break_pool || limit, requeue, out);
  }
  Requeue(requeue);
  if (break_pool) {
    Break(absl::AbortedError(absl::StrCat(
              "BrokenPool: ", how,
              "; the pool is broken (WorkerDeathPolicy::kBreakPool)")),
          now, out);
  }
}

void Scheduler::CrashItem(Call& call, size_t k, const std::string& crash,
                          const std::string& tail, absl::StatusCode code, bool no_retry,
                          std::vector<std::shared_ptr<TaskState>>& requeue,
                          Actions& out) {
  std::shared_ptr<TaskState>& t = call.task;
  ChunkState* chunk = t->AsChunk();
  if (chunk != nullptr) k = std::min<size_t>(k, std::max<size_t>(chunk->unanswered(), 1) - 1);
  const size_t position = chunk != nullptr ? chunk->UnansweredPosition(k) : 0;
  std::vector<std::string>& crashes = t->crashes(position);
  crashes.push_back(crash);
  const bool retry = !no_retry && code == absl::StatusCode::kAborted &&
                     static_cast<int>(crashes.size()) <= t->policy().retries;
  if (retry) {
    if (t->Requeue(/*ran=*/true)) requeue.push_back(std::move(t));  // the whole call again
    return;
  }
  absl::Status why(code, CrashMessage(DescribeItem(*t, position), crashes, tail));
  if (chunk == nullptr) {
    Resolve(std::move(t), std::move(why), out);
  } else if (chunk->FailRunning(k, std::move(why))) {
    Resolve(std::move(t), absl::OkStatus(), out);
  } else if (t->Requeue(/*ran=*/true)) {
    // The others (those before it lost their answers) run again, or, when
    // the pool breaks, fail with the pool.
    requeue.push_back(std::move(t));
  }
}

}  // namespace procpool::internal
