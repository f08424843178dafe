#include "pool/internal/mpi_driver.h"

#include <signal.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "pool/internal/chunk_state.h"
#include "pool/internal/wire.h"

namespace procpool::internal {

namespace {

constexpr size_t kMaxMessageBytes = size_t{1} << 20;
constexpr size_t kCallOverhead = 64;
// An answer without a measured run time (the agent measured nothing yet)
// counts as this much, so that the batches stay small until it has.
constexpr uint64_t kUnmeasuredNs = 1'000'000;

SchedulerConfig ConfigFor(const PoolOptions& o, size_t agents) {
  SchedulerConfig c;
  c.kind = SchedulerConfig::Kind::kAgent;
  c.slots = agents;
  c.on_worker_death = o.on_worker_death;
  c.start_timeout = o.start_timeout;
  c.kill_grace = o.kill_grace;
  c.liveness_timeout = o.mpi.agent_timeout;
  c.requeue_on_loss = o.mpi.requeue_on_agent_loss;
  c.max_call_bytes = o.max_frame_bytes;
  c.batch_bytes = std::max<size_t>(1, std::min(kMaxMessageBytes, o.max_frame_bytes / 2));
  return c;
}

AgentConfig AgentConfigFor(const PoolOptions& o) {
  AgentConfig c;
  c.plugins = o.plugins;
  c.worker_path = o.worker_path;
  c.max_workers = o.max_workers;
  c.max_tasks_per_child = o.max_tasks_per_child;
  c.max_worker_rss_bytes = o.max_worker_rss_bytes;
  c.kill_grace_ns = absl::ToInt64Nanoseconds(o.kill_grace);
  c.forward_worker_stderr = o.forward_worker_stderr;
  c.stderr_tail_lines = o.stderr_tail_lines;
  c.start_timeout_ns = absl::ToInt64Nanoseconds(o.start_timeout);
  c.max_frame_bytes = o.max_frame_bytes;
  c.init_task = o.initializer.task;
  c.init_fingerprint = o.initializer.fingerprint;
  c.init_args = o.initializer.args;
  c.heartbeat_ns = absl::ToInt64Nanoseconds(o.mpi.heartbeat_interval);
  c.agent_timeout_ns = absl::ToInt64Nanoseconds(o.mpi.agent_timeout);
  return c;
}

void RegisterMpiDriver() __attribute__((constructor));
void RegisterMpiDriver() { MpiBackendFactory() = &MpiDriver::Start; }

}  // namespace

// ---------------------------------------------------------------------------
// Setup and teardown

MpiDriver::MpiDriver(PoolOptions options, uint64_t epoch, std::vector<int> live_ranks)
    : Driver(options, ConfigFor(options, live_ranks.size())),
      epoch_(epoch),
      config_bytes_(EncodeMpiMessage(epoch, AgentConfigFor(options))) {
  MpiWorld& world = MpiWorld::Get();
  absl::MutexLock l(&io_mu_);
  agents_.resize(static_cast<size_t>(world.size() - 1));
  for (size_t i = 0; i < agents_.size(); ++i) {
    Agent& a = agents_[i];
    a.rank = static_cast<int>(i) + 1;
    if (world.IsLost(a.rank)) {
      a.lost = a.gone = true;
      a.lost_reason = "lost by an earlier pool of this job";
    }
    PublishAgent(a);
  }
  for (int r : live_ranks) slot_agent_.push_back(static_cast<size_t>(r - 1));
}

absl::StatusOr<std::unique_ptr<Backend>> MpiDriver::Start(PoolOptions options) {
  MpiWorld& world = MpiWorld::Get();
  if (!world.initialized()) {
    return absl::FailedPreconditionError(
        "the MPI backend needs a procpool::mpi::Session (pool/mpi.h) in this "
        "process");
  }
  if (world.rank() != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "an MPI pool is created on rank 0 only; this is rank ", world.rank(),
        ", which should run Session::ServeAsAgent()"));
  }
  std::vector<int> live;
  for (int r = 1; r < world.size(); ++r) {
    if (!world.IsLost(r)) live.push_back(r);
  }
  if (live.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the MPI job has no ", world.size() > 1 ? "live " : "",
        "agent rank: launch it with mpirun -np N, N >= 2 (", world.size(),
        " rank(s) now)"));
  }
  if (options.on_worker_death == WorkerDeathPolicy::kBreakPool) {
    return absl::FailedPreconditionError(
        "WorkerDeathPolicy::kBreakPool is not supported by the MPI backend");
  }
  if (!world.TryAcquirePool()) {
    return absl::FailedPreconditionError(
        "another MPI pool is alive in this job; destroy it first (the agents "
        "serve one pool at a time)");
  }
  std::unique_ptr<MpiDriver> d(
      new MpiDriver(std::move(options), world.NextEpoch(), std::move(live)));
  d->MakeCancelChannel(nullptr, nullptr);
  d->transport_ = std::make_unique<MpiTransport>(world.comm());
  MpiDriver* self = d.get();
  d->io_thread_ = std::thread([self] { self->IoLoop(); });
  absl::Status started = d->AwaitStarted();
  if (absl::IsDeadlineExceeded(started)) {
    std::vector<int> missing;
    for (const AgentSnapshot& a : d->Agents()) {
      if (!a.ready && a.host.empty() && !a.lost) missing.push_back(a.rank);
    }
    started = absl::DeadlineExceededError(absl::StrCat(
        "MPI agent rank(s) ", absl::StrJoin(missing, ", "),
        " did not start their pools within ",
        absl::FormatDuration(d->options_.start_timeout),
        " (does every rank other than 0 run Session::ServeAsAgent()?)"));
  }
  if (!started.ok()) return started;  // ~MpiDriver joins the I/O thread
  return std::unique_ptr<Backend>(std::move(d));
}

MpiDriver::~MpiDriver() {
  if (io_thread_.joinable()) {
    DrainForDestruction();
    io_thread_.join();
  }
  transport_.reset();  // lets the last messages leave (bounded)
  MpiWorld::Get().ReleasePool();
}

// ---------------------------------------------------------------------------
// Callers

void MpiDriver::Enqueue(std::shared_ptr<TaskState> task) {
  std::vector<std::shared_ptr<TaskState>> one;
  one.push_back(std::move(task));
  EnqueueMany(one);
}

void MpiDriver::Wake() {
  wake_.store(true);
  if (sleeping_.load()) {
    absl::MutexLock l(&sleep_mu_);
    sleep_cv_.Signal();
  }
}

std::vector<int> MpiDriver::WorkerPids() const {
  absl::MutexLock l(&agents_mu_);
  std::vector<int> out;
  for (const AgentSnapshot& a : snapshots_) {
    if (a.ready && !a.lost && a.pid > 0) out.push_back(a.pid);
  }
  return out;
}

PoolStats MpiDriver::Stats() const {
  PoolStats out;
  {
    absl::MutexLock l(&agents_mu_);
    for (const AgentSnapshot& a : snapshots_) {
      WorkerStats w;
      w.slot = a.rank;
      w.pid = a.lost ? 0 : a.pid;
      w.tasks_done = a.tasks_done;
      if (a.lost) {
        w.restarts = 1;
        w.restart_reasons.push_back(a.lost_reason);
      }
      out.workers.push_back(std::move(w));
    }
  }
  AddCounters(out);
  return out;
}

std::vector<AgentSnapshot> MpiDriver::Agents() const {
  absl::MutexLock l(&agents_mu_);
  return snapshots_;
}

void MpiDriver::PublishAgent(const Agent& a) {
  AgentSnapshot s;
  s.rank = a.rank;
  s.host = a.host;
  s.pid = a.pid;
  s.workers = a.workers;
  s.ready = a.ready;
  s.lost = a.lost;
  s.lost_reason = a.lost_reason;
  s.tasks_done = a.answered;
  s.in_flight = a.gone ? 0 : a.sent - a.answered;
  absl::MutexLock l(&agents_mu_);
  if (snapshots_.size() < static_cast<size_t>(a.rank)) snapshots_.resize(a.rank);
  snapshots_[static_cast<size_t>(a.rank) - 1] = std::move(s);
  int total = 0;
  for (const AgentSnapshot& o : snapshots_) {
    if (o.ready && !o.lost) total += o.workers;
  }
  total_workers_.store(total, std::memory_order_relaxed);
}

std::string MpiDriver::DescribeAgent(const Agent& a) {
  return a.host.empty()
             ? absl::StrCat("MPI rank ", a.rank)
             : absl::StrCat("MPI rank ", a.rank, " (", a.host, ", pid ", a.pid, ")");
}

// ---------------------------------------------------------------------------
// The I/O thread

void MpiDriver::IoLoop() {
  absl::MutexLock io(&io_mu_);
  absl::Time now = absl::Now();
  sched_.Start(now, actions_);
  Execute();
  Publish();
  bool stopped = false;  // a Shutdown or Terminate was taken
  PollBackoff backoff;
  backoff.Activity(now);
  while (true) {
    now = absl::Now();
    bool activity = PollMessages(now);
    const bool woken = wake_.load(std::memory_order_acquire) && wake_.exchange(false);
    // The intake is taken when a caller woke this thread, and at each
    // answer (a caller does not wake it while every agent's window is
    // full: an answer comes first).
    if (woken || activity) stopped = TakeRequests(now) || stopped;
    if (now >= sched_.NextWakeup()) {
      sched_.Tick(now, actions_);
      activity = true;
    }
    if (now >= next_check_) CheckAgents(now);
    if (activity || woken || !actions_.empty()) {
      Execute();
      Publish();
    }
    if (stopped && sched_.Drained()) break;
    if (activity || woken) {
      backoff.Activity(now);
      continue;
    }
    // Calls are out (or messages on their way): poll again at once.
    const bool busy = !sched_.Idle() || transport_->pending_sends() > 0;
    absl::Duration wait = backoff.Next(now, busy);
    if (wait == absl::ZeroDuration()) {
      std::this_thread::yield();  // the workers may share this CPU
      continue;
    }
    wait = std::min({wait, sched_.NextWakeup() - now, next_check_ - now});
    if (wait > absl::ZeroDuration()) Sleep(wait);
  }
  Publish();
  IoThreadDone();
}

void MpiDriver::Sleep(absl::Duration timeout) {
  io_mu_.Unlock();
  {
    absl::MutexLock l(&sleep_mu_);
    sleeping_.store(true);
    if (!wake_.load()) sleep_cv_.WaitWithTimeout(&sleep_mu_, timeout);
    sleeping_.store(false);
  }
  io_mu_.Lock();
}

bool MpiDriver::PollMessages(absl::Time now) {
  bool any = false;
  for (int i = 0; i < 64; ++i) {
    absl::StatusOr<std::optional<MpiMessage>> m = transport_->Poll();
    if (!m.ok()) {
      // MPI itself failed: no agent can be reached any more.
      for (Agent& a : agents_) LoseAgent(a, std::string(m.status().message()), now);
      return true;
    }
    if (!m->has_value()) break;
    any = true;
    HandleMessage(**m, now);
  }
  return any;
}

MpiDriver::Agent* MpiDriver::FindAgent(WorkerId id) {
  auto it = by_worker_.find(id);
  return it == by_worker_.end() ? nullptr : &agents_[it->second];
}

void MpiDriver::SendTo(Agent& a, int tag, std::string bytes) {
  if (a.lost) return;
  absl::Status s = transport_->Send(a.rank, tag, std::move(bytes));
  if (!s.ok()) {
    LoseAgent(a, absl::StrCat("sending to it failed: ", s.message()), absl::Now());
    return;
  }
  a.last_sent = absl::Now();
}

void MpiDriver::CheckAgents(absl::Time now) {
  next_check_ = now + std::min(options_.mpi.heartbeat_interval / 4, absl::Milliseconds(5));
  for (Agent& a : agents_) {
    if (a.id == 0 || a.lost) continue;
    if (now >= a.give_up_at) {
      LoseAgent(a, "it did not confirm that its pool stopped", now);
    } else if (!a.gone && !a.stopping &&
               now - a.last_sent >= options_.mpi.heartbeat_interval) {
      SendTo(a, kTagHeartbeat, EncodeMpiMessage(epoch_, Heartbeat{}));
    }
  }
}

// ---------------------------------------------------------------------------
// Actions

void MpiDriver::WriteSends(std::vector<SendAction>& sends) {
  const size_t budget =
      std::max<size_t>(1, std::min(kMaxMessageBytes, options_.max_frame_bytes / 2));
  size_t i = 0;
  while (i < sends.size()) {
    size_t j = i;
    while (j < sends.size() && sends[j].worker == sends[i].worker) ++j;
    Agent* a = FindAgent(sends[i].worker);
    if (a != nullptr && !a->gone) {
      // Calls decided in several steps may follow each other here: one
      // message holds at most `budget` bytes of them.
      std::vector<RemoteCall> calls;
      size_t bytes = 0;
      for (size_t k = i; k < j; ++k) {
        const SendAction& s = sends[k];
        TaskState& t = *s.call;
        RemoteCall c;
        c.id = t.id();
        c.task = t.task();
        c.index = t.index();
        c.timeout_ns = t.policy().timeout == absl::InfiniteDuration()
                           ? -1
                           : absl::ToInt64Nanoseconds(t.policy().timeout);
        c.retries = t.policy().retries;
        if (ChunkState* chunk = t.AsChunk()) {
          c.index = chunk->UnansweredIndex(0);
          c.args = s.items > 0 ? std::string(chunk->ArgsPrefix(s.items)) : t.args();
        } else {
          c.args = t.args();
        }
        if (!calls.empty() && bytes + c.args.size() > budget) {
          SendTo(*a, kTagCalls, EncodeMpiMessage(epoch_, calls));
          calls.clear();
          bytes = 0;
        }
        bytes += c.args.size() + kCallOverhead;
        calls.push_back(std::move(c));
      }
      // A send that fails loses the agent: the scheduler hears of it and
      // runs its calls elsewhere.
      SendTo(*a, kTagCalls, EncodeMpiMessage(epoch_, calls));
      a->sent += j - i;
      PublishAgent(*a);
    }
    i = j;
  }
  sends.clear();
}

void MpiDriver::Control(const Action& action) {
  const absl::Time now = absl::Now();
  if (action.kind == Action::Kind::kSpawn) {
    Agent& a = agents_[slot_agent_[action.slot]];
    a.id = action.worker;
    by_worker_[action.worker] = slot_agent_[action.slot];
    a.last_heard = now;
    sched_.OnSpawned(a.id, 0, nullptr);
    SendTo(a, kTagConfig, config_bytes_);
    return;
  }
  Agent* a = FindAgent(action.worker);
  if (a == nullptr || a->gone) return;
  switch (action.kind) {
    case Action::Kind::kCancelRemote:
      SendTo(*a, kTagCancel,
             EncodeMpiMessage(epoch_, std::vector<uint64_t>{action.task->id()}));
      return;
    case Action::Kind::kClose:
      AskToStop(*a);
      return;
    case Action::Kind::kSignal:
      if (action.signal != SIGKILL) {
        AskToStop(*a);
        return;
      }
      // The scheduler gives up on the agent. One that is silent is lost
      // now; one that answers is asked to stop its pool, and lost only if
      // it does not confirm in time (so that the next pool of the job may
      // use it).
      a->killed = true;
      if (now - a->last_heard >= options_.mpi.agent_timeout) {
        LoseAgent(*a, action.text.empty() ? "the pool gave up on it" : action.text, now);
        return;
      }
      AskToStop(*a);
      a->give_up_at = a->stop_asked_at + options_.kill_grace +
                      std::min(options_.mpi.agent_timeout, absl::Seconds(2));
      if (now >= a->give_up_at) {
        LoseAgent(*a, "it did not confirm that its pool stopped", now);
        return;
      }
      next_check_ = std::min(next_check_, a->give_up_at);
      return;
    case Action::Kind::kSpawn:
    case Action::Kind::kSlotNote:  // the agents' snapshots say what happened
      return;
  }
}

void MpiDriver::AskToStop(Agent& a) {
  if (a.stopping || a.gone || a.lost) return;
  a.stopping = true;
  a.stop_asked_at = absl::Now();
  SendTo(a, kTagStop, EncodeMpiMessage(epoch_, Heartbeat{}));
}

void MpiDriver::AgentEnded(Agent& a, const std::string& how, bool clean, absl::Time now) {
  const bool was_gone = a.gone;
  a.gone = true;
  a.stopping = false;
  a.give_up_at = absl::InfiniteFuture();
  PublishAgent(a);
  if (was_gone) return;
  WorkerExit exit;
  exit.how = how;
  exit.exited_zero = clean;
  exit.killed = !clean;
  sched_.OnExit(a.id, exit, now, actions_);
}

void MpiDriver::LoseAgent(Agent& a, const std::string& why, absl::Time now) {
  if (a.lost) return;
  a.lost = true;
  a.lost_reason = absl::StrCat("remote worker rank ", a.rank, " lost: ", why);
  transport_->Abandon(a.rank);
  MpiWorld::Get().MarkLost(a.rank);
  AgentEnded(a, a.lost_reason, /*clean=*/false, now);
}

// ---------------------------------------------------------------------------
// Messages

void MpiDriver::HandleMessage(MpiMessage& m, absl::Time now) {
  if (m.source <= 0 || static_cast<size_t>(m.source) > agents_.size()) return;
  Agent& a = agents_[static_cast<size_t>(m.source) - 1];
  if (a.lost || a.id == 0 || MpiMessageEpoch(m.bytes) != epoch_) return;
  a.last_heard = now;
  if (a.gone) return;
  sched_.OnHeard(a.id, now);
  switch (m.tag) {
    case kTagHello:
      return HandleHello(a, m, now);
    case kTagResults:
      return HandleResults(a, m, now);
    case kTagStopped:
      if (a.stopping) {
        AgentEnded(a, a.killed ? "stopped its pool when the pool gave up on it"
                               : "stopped its pool",
                   /*clean=*/!a.killed, now);
      }
      return;
    case kTagHeartbeat:
      return;
    default:
      sched_.OnProtocolError(
          a.id,
          absl::DataLossError(absl::StrCat("protocol error from ", DescribeAgent(a),
                                           ": unexpected MPI tag ", m.tag)),
          now, actions_);
  }
}

void MpiDriver::HandleHello(Agent& a, const MpiMessage& m, absl::Time now) {
  if (a.ready || a.stopping) return;
  absl::StatusOr<AgentHello> hello = DecodeMpiMessage<AgentHello>(m.bytes, "hello");
  if (!hello.ok()) {
    AskToStop(a);
    a.gone = true;
    PublishAgent(a);
    sched_.OnSpawnFailed(a.id,
                         absl::DataLossError(absl::StrCat("MPI rank ", a.rank, ": ",
                                                          hello.status().message())),
                         now, actions_);
    return;
  }
  a.host = hello->host;
  a.pid = hello->pid;
  if (!hello->error.empty()) {
    a.gone = true;  // its pool did not start
    PublishAgent(a);
    sched_.OnSpawnFailed(a.id,
                         absl::Status(static_cast<absl::StatusCode>(hello->error_code),
                                      absl::StrCat("MPI agent ", DescribeAgent(a), ": ",
                                                   hello->error)),
                         now, actions_);
    return;
  }
  std::vector<TaskInfo> tasks;
  for (const RemoteTask& t : hello->tasks) {
    tasks.push_back(TaskInfo{t.name, t.plugin, t.fingerprint, t.signature});
  }
  // The first agent's manifest is the pool's; every other must be the same.
  if (first_manifest_ == SIZE_MAX) {
    first_manifest_ = static_cast<size_t>(a.rank) - 1;
    SetTasks(std::move(tasks));
  } else if (std::string difference = ManifestDifference(a, tasks); !difference.empty()) {
    AskToStop(a);  // its pool started
    a.gone = true;
    PublishAgent(a);
    sched_.OnSpawnFailed(
        a.id,
        absl::FailedPreconditionError(absl::StrCat(
            "the plugin manifests differ between MPI ranks: ", difference,
            "; every node must load the same plugin files")),
        now, actions_);
    return;
  }
  a.ready = true;
  a.workers = std::max(1, hello->workers);
  PublishAgent(a);
  sched_.OnSpawned(a.id, a.pid, nullptr);
  sched_.OnReady(a.id, static_cast<size_t>(a.workers), now, actions_);
}

std::string MpiDriver::ManifestDifference(const Agent& a,
                                          const std::vector<TaskInfo>& tasks) const {
  const std::vector<TaskInfo>& known = this->tasks();
  const Agent& first = agents_[first_manifest_];
  auto show = [](const std::vector<TaskInfo>& v, size_t i) {
    return i < v.size()
               ? absl::StrCat("'", v[i].name, "' ", v[i].signature, " from ", v[i].plugin)
               : std::string("nothing");
  };
  const size_t n = std::max(tasks.size(), known.size());
  for (size_t i = 0; i < n; ++i) {
    if (i < tasks.size() && i < known.size() && tasks[i].name == known[i].name &&
        tasks[i].fingerprint == known[i].fingerprint) {
      continue;
    }
    return absl::StrCat("task #", i, " is ", show(known, i), " on ", DescribeAgent(first),
                        " but ", show(tasks, i), " on ", DescribeAgent(a));
  }
  return "";
}

void MpiDriver::HandleResults(Agent& a, const MpiMessage& m, absl::Time now) {
  if (!a.ready) return;
  absl::StatusOr<RemoteResults> results =
      DecodeMpiMessage<RemoteResults>(m.bytes, "results");
  if (!results.ok()) {
    sched_.OnProtocolError(a.id,
                           absl::DataLossError(absl::StrCat("protocol error from ",
                                                            DescribeAgent(a), ": ",
                                                            results.status().message())),
                           now, actions_);
    return;
  }
  std::vector<Answer> answers;
  answers.reserve(results->results.size());
  for (RemoteResult& r : results->results) {
    Answer answer;
    answer.id = r.id;
    answer.code = r.code;
    answer.run_ns = r.run_ns > 0 ? r.run_ns : kUnmeasuredNs;
    answer.bytes = ResultBytes(std::move(r.payload));
    answers.push_back(std::move(answer));
  }
  a.answered += answers.size();
  sched_.OnAnswers(a.id, answers, now, actions_);
  PublishAgent(a);
}

}  // namespace procpool::internal
