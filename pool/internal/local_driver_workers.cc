// The local driver's side of what workers say and do: reading their
// sockets (hellos, answers, protocol errors), and their exits.

#include <signal.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "pool/internal/limits.h"
#include "pool/internal/local_driver.h"
#include "pool/internal/wire.h"
#include "pool/internal/worker_connection.h"

namespace procpool::internal {

void LocalDriver::OnReadable(WorkerConnection& w, bool read_stderr) {
  // What a task wrote to stderr is forwarded before its future resolves.
  if (read_stderr) w.ReadStderr(options_.forward_worker_stderr, options_.stderr_tail_lines);
  bool drained = false;
  while (!w.hung_up && !drained) {
    char* space = w.decoder.WritableSpace(64 * 1024);
    const size_t room = w.decoder.writable();
    const ssize_t n = ::read(w.sock.get(), space, room);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      return HungUp(w);  // ECONNRESET and the like: its exit tells the story
    }
    if (n == 0) return HungUp(w);
    w.decoder.Commit(static_cast<size_t>(n));
    // A short read emptied the socket: more data later is a new event.
    drained = static_cast<size_t>(n) < room;
    while (!w.hung_up) {
      absl::StatusOr<std::optional<Frame>> f = w.decoder.Next();
      if (!f.ok()) {
        return ProtocolError(w, absl::DataLossError(absl::StrCat(
                                    "protocol error from worker: ", f.status().message())));
      }
      if (!f->has_value()) break;
      HandleFrame(w, static_cast<uint8_t>((*f)->type), (*f)->payload);
    }
  }
}

void LocalDriver::HandleFrame(WorkerConnection& w, uint8_t type, std::string_view payload) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::kHello:
      if (w.ready) break;
      return HandleHello(w, payload);
    case FrameType::kResults:
      if (!w.ready) break;
      return HandleResults(w, payload);
    default:
      break;
  }
  ProtocolError(w, absl::DataLossError(absl::StrCat(
                       "protocol error from worker: unexpected frame type ", type)));
}

void LocalDriver::HandleHello(WorkerConnection& w, std::string_view payload) {
  absl::StatusOr<HelloMsg> hello = DecodeHello(payload);
  if (!hello.ok()) return ProtocolError(w, hello.status());
  if (!hello->error.empty()) {
    // It exits after saying why; its exit reports it.
    w.hello_error = absl::Status(static_cast<absl::StatusCode>(hello->error_code),
                                 hello->error);
    return;
  }
  std::vector<TaskInfo> tasks;
  for (const PluginManifest& p : hello->plugins) {
    for (const TaskManifest& t : p.tasks) {
      tasks.push_back(TaskInfo{t.name, p.path, t.fingerprint, t.signature});
    }
  }
  if (!has_tasks()) {
    // The first hello defines the task table; Start() returns only after
    // it, so callers read it without a lock.
    SetTasks(std::move(tasks));
  } else {
    const std::vector<TaskInfo>& known = this->tasks();
    bool same = tasks.size() == known.size();
    for (size_t i = 0; same && i < tasks.size(); ++i) {
      same = tasks[i].name == known[i].name && tasks[i].fingerprint == known[i].fingerprint;
    }
    if (!same) {
      w.hello_error = absl::FailedPreconditionError(absl::StrCat(
          "worker pid ", w.pid(),
          " loaded plugins whose tasks differ from the first worker's "
          "(were the plugin files replaced while the pool ran?)"));
      w.proc.Kill(SIGKILL);
      return;
    }
  }
  w.ready = true;
  if (!w.spare) sched_.OnReady(w.id, 1, absl::Now(), actions_);  // else when adopted
}

void LocalDriver::HandleResults(WorkerConnection& w, std::string_view payload) {
  absl::StatusOr<std::vector<ResultMsg>> results = DecodeResults(payload);
  if (!results.ok()) return ProtocolError(w, results.status());
  std::vector<Answer> answers;
  answers.reserve(results->size());
  for (ResultMsg& r : *results) {
    w.Answered(++w.answered_seq);
    Answer a;
    a.id = r.id;
    a.code = r.code & ~(kRegionResult | kRegionResultInCall);
    a.run_ns = r.run_ns;
    if (r.code & (kRegionResult | kRegionResultInCall)) {
      absl::StatusOr<ResultBytes> b =
          w.RegionResult(r.payload, (r.code & kRegionResultInCall) != 0, /*borrow=*/true);
      if (!b.ok()) {
        sched_.OnAnswers(w.id, answers, absl::Now(), actions_);
        return ProtocolError(w, b.status());
      }
      shm_results_.fetch_add(1, std::memory_order_relaxed);
      a.bytes = *std::move(b);
    } else {
      a.bytes = ResultBytes(std::move(r.payload));
    }
    answers.push_back(std::move(a));
  }
  sched_.OnAnswers(w.id, answers, absl::Now(), actions_);
}

void LocalDriver::ProtocolError(WorkerConnection& w, absl::Status why) {
  HungUp(w);
  if (w.spare) {
    w.proc.Kill(SIGKILL);  // its exit is reported as a spare's
    return;
  }
  sched_.OnProtocolError(w.id, std::move(why), absl::Now(), actions_);
}

void LocalDriver::HungUp(WorkerConnection& w) {
  if (w.hung_up) return;
  w.hung_up = true;
  if (!w.caller_owned) Unwatch(w.sock.get());
  // Its pidfd stays watched: the exit, usually a moment later, fails what
  // it ran and frees its slot (Scheduler::OnDisconnected).
  if (!w.spare) sched_.OnDisconnected(w.id, absl::Now(), actions_);
}

void LocalDriver::OnExited(WorkerConnection& w) {
  if (w.assisting) {
    // A caller polls its socket: it sees the death too, and gives the
    // socket back; handled then.
    if (std::find(exits_deferred_.begin(), exits_deferred_.end(), w.id) ==
        exits_deferred_.end()) {
      Unwatch(w.proc.pidfd());
      exits_deferred_.push_back(w.id);
    }
    return;
  }
  // What it wrote before it died is still in the socket: that comes first.
  if (!w.hung_up) OnReadable(w);
  w.exited = true;
  UnwatchWorker(w);
  const ExitStatus status = w.Reap();
  w.ReadStderr(options_.forward_worker_stderr, options_.stderr_tail_lines);
  if (w.spare) {  // it died before a slot took it: nothing else knew of it
    ForgetSpare();
    if (++spare_deaths_ >= kMaxSpareDeaths) spares_off_ = true;
    return;
  }
  const WorkerStatusPage& page = w.page();
  WorkerExit exit;
  exit.how = status.ToString();
  if (const uint32_t denied = page.denied_syscall.load(std::memory_order_acquire); denied != 0) {
    const std::string name(page.denied_syscall_name,
                           strnlen(page.denied_syscall_name, sizeof(page.denied_syscall_name)));
    absl::StrAppend(&exit.how, ": the sandbox denied system call ", name, " (", denied - 1, ")");
  }
  exit.exited_zero = status.exited() && status.exit_code() == 0;
  exit.killed = status.signaled() && (status.signal() == SIGKILL || status.signal() == SIGTERM);
  exit.retired = static_cast<RetireReason>(page.retire_reason.load(std::memory_order_acquire));
  exit.running_task = page.running_task.load(std::memory_order_acquire);
  exit.running_item = page.running_item.load(std::memory_order_acquire);
  exit.tasks_done = page.tasks_done.load(std::memory_order_relaxed);
  exit.rss_bytes = page.rss_bytes.load(std::memory_order_relaxed);
  exit.rss_limit = options_.max_worker_rss_bytes;
  exit.hello_error = w.hello_error;
  exit.stderr_tail = w.StderrTail();
  if (limits_ != nullptr) {  // hard limits (limits.h)
    auto group = cgroups_.find(w.id);
    exit.limit = limits_->Crossing(page, status.signaled() ? status.signal() : 0,
                                   group == cgroups_.end() ? nullptr : group->second.get());
    cgroups_.erase(w.id);  // its worker is reaped
  }
  SlotGone(w);
  sched_.OnExit(w.id, exit, absl::Now(), actions_);
  // Only once these are carried out does nothing refer to its claim table.
  Execute();
  workers_.erase(w.id);
}

}  // namespace procpool::internal
