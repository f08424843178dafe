#include "pool/internal/mpi_backend.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "pool/internal/chunk_state.h"
#include "pool/internal/status_macros.h"
#include "pool/internal/wire.h"

namespace procpool::internal {

// One agent rank, as the I/O thread sees it.
struct MpiBackend::Agent {
  int rank = 0;
  std::string host;
  int pid = 0;
  int workers = 0;
  bool contacted = false;  // sent the configuration
  bool ready = false;      // answered with a good hello
  bool lost = false;
  std::string lost_reason;
  bool stopped = false;    // answered kTagStop
  absl::Time last_heard;
  absl::Time last_sent;
  uint64_t tasks_done = 0;
  // Sent and not answered, by the front end's task id. An agent answers in
  // completion order, not in the order it was sent.
  absl::flat_hash_map<uint64_t, std::shared_ptr<TaskState>> inflight;
  // Items in `inflight` (a chunk counts its items): what the window bounds.
  size_t inflight_items = 0;
};

namespace {

constexpr size_t kMaxBatch = 4096;
constexpr uint64_t kTargetBatchNs = 1'000'000;   // 1 ms of work per batch
constexpr uint64_t kPipelineBelowNs = 1'000'000;
constexpr size_t kMaxMessageBytes = size_t{1} << 20;
constexpr size_t kCallOverhead = 64;
// Longest sleep between polls while tasks are out: a twentieth of the
// average task, within these bounds (PollPacer).
constexpr absl::Duration kMinBusyPoll = absl::Microseconds(20);
constexpr absl::Duration kMaxBusyPoll = absl::Milliseconds(1);

size_t BatchSize(uint64_t avg_ns) {
  if (avg_ns == 0) return 1;
  return std::clamp<size_t>(kTargetBatchNs / avg_ns, 1, kMaxBatch);
}

// Calls a task stands for: a chunk's unanswered items, else 1.
size_t Items(TaskState& t) {
  ChunkState* chunk = t.AsChunk();
  return chunk != nullptr ? std::max<size_t>(1, chunk->unanswered()) : 1;
}

// A chunk result (wire.h) answering `answers` OK items with these archives.
std::string OkChunkAnswer(const std::vector<std::string*>& answers) {
  std::string out;
  const size_t result = BeginChunkResult(&out);
  for (const std::string* a : answers) {
    const size_t answer = BeginChunkAnswer(&out);
    out.append(*a);
    EndChunkAnswer(&out, answer, static_cast<uint8_t>(ResultCode::kOk));
  }
  EndChunkResult(&out, result, static_cast<uint32_t>(answers.size()));
  return out;
}

void ResolveMpiBackend() __attribute__((constructor));
void ResolveMpiBackend() { MpiBackendFactory() = &MpiBackend::Start; }

}  // namespace

// ---------------------------------------------------------------------------
// Setup and teardown

MpiBackend::MpiBackend(PoolOptions options, uint64_t epoch)
    : options_(std::move(options)), epoch_(epoch) {}

absl::StatusOr<std::unique_ptr<Backend>> MpiBackend::Start(PoolOptions options) {
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
  int agents = 0;
  for (int r = 1; r < world.size(); ++r) agents += world.IsLost(r) ? 0 : 1;
  if (agents == 0) {
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
  std::unique_ptr<MpiBackend> b(new MpiBackend(std::move(options), world.NextEpoch()));
  MpiBackend* c = b.get();
  c->cancel_channel_ = std::make_shared<CancelChannel>([c](uint64_t id) {
    {
      absl::MutexLock l(&c->mu_);
      c->cancel_requests_.push_back(id);
      c->wake_ = true;
    }
  });
  c->transport_ = std::make_unique<MpiTransport>(world.comm());
  c->agents_.resize(static_cast<size_t>(world.size()));
  {
    absl::MutexLock l(&c->mu_);
    c->snapshots_.resize(static_cast<size_t>(world.size()));
  }
  for (int r = 1; r < world.size(); ++r) {
    auto a = std::make_unique<Agent>();
    a->rank = r;
    a->lost = world.IsLost(r);
    if (a->lost) a->lost_reason = "lost by an earlier pool of this job";
    c->agents_[static_cast<size_t>(r)] = std::move(a);
    c->PublishAgent(*c->agents_[static_cast<size_t>(r)]);
  }
  c->start_deadline_ = absl::Now() + c->options_.start_timeout;
  c->io_thread_ = std::thread([c] { c->IoLoop(); });

  absl::Status error;
  {
    absl::MutexLock l(&c->mu_);
    auto started = [c]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu_) {
      return c->start_done_ || c->io_done_;
    };
    c->mu_.Await(absl::Condition(&started));  // the I/O thread keeps the deadline
    error = c->start_error_;
    if (error.ok() && !c->start_done_) {
      error = absl::InternalError("the MPI pool's I/O thread ended during start");
    }
  }
  if (!error.ok()) return error;  // ~MpiBackend stops the agents
  return std::unique_ptr<Backend>(std::move(b));
}

MpiBackend::~MpiBackend() {
  if (cancel_channel_) cancel_channel_->Detach();
  Shutdown(/*wait=*/false, /*cancel_pending=*/true, absl::InfiniteDuration());
  {
    absl::MutexLock l(&mu_);
    stop_ = Stop::kForce;
    wake_ = true;
  }
  if (io_thread_.joinable()) io_thread_.join();
  transport_.reset();  // flushes the stop messages (bounded)
  MpiWorld::Get().ReleasePool();
}

void MpiBackend::Terminate() {
  Shutdown(/*wait=*/false, /*cancel_pending=*/true, absl::InfiniteDuration());
  {
    absl::MutexLock l(&mu_);
    stop_ = Stop::kForce;
    wake_ = true;
  }
  absl::MutexLock l(&mu_);
  mu_.Await(absl::Condition(&io_done_));
}

bool MpiBackend::Shutdown(bool wait, bool cancel_pending, absl::Duration timeout) {
  (void)timeout;
  std::deque<std::shared_ptr<TaskState>> cancelled;
  {
    absl::MutexLock l(&mu_);
    if (accepting_) {
      accepting_ = false;
      refuse_reason_ = absl::FailedPreconditionError(
          "the pool is shut down; no new tasks are accepted");
    }
    if (cancel_pending) cancelled.swap(pending_);
  }
  for (auto& t : cancelled) {
    t->Cancel(absl::CancelledError("cancelled by Shutdown() before it ran"));
  }
  if (wait) {
    absl::MutexLock l(&mu_);
    auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return (pending_.empty() && in_flight_ == 0) || io_done_;
    };
    mu_.Await(absl::Condition(&drained));
  }
  {
    absl::MutexLock l(&mu_);
    if (stop_ == Stop::kNo) stop_ = Stop::kGraceful;
    wake_ = true;
  }
  if (wait) {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(&io_done_));
  }
  return true;
}

// ---------------------------------------------------------------------------
// Callers' side

absl::StatusOr<uint32_t> MpiBackend::FindTask(absl::string_view name,
                                              uint64_t fingerprint,
                                              absl::string_view readable) const {
  return FindTaskIn(tasks_, task_index_, options_.plugins, name, fingerprint,
                    readable);
}

void MpiBackend::Enqueue(std::shared_ptr<TaskState> task) {
  std::vector<std::shared_ptr<TaskState>> one;
  one.push_back(std::move(task));
  EnqueueMany(one);
}

void MpiBackend::EnqueueMany(std::vector<std::shared_ptr<TaskState>>& tasks) {
  for (auto& t : tasks) t->set_callback_errors(callback_errors_);
  std::erase_if(tasks, [this](const std::shared_ptr<TaskState>& t) {
    if (t->args().size() + kCallOverhead <= options_.max_frame_bytes) return false;
    t->Cancel(absl::ResourceExhaustedError(absl::StrCat(
        DescribeTask(*t), ": its arguments are ", t->args().size(),
        " bytes, over the frame limit of ", options_.max_frame_bytes,
        " bytes (PoolOptions::max_frame_bytes)")));
    return true;
  });
  for (auto& t : tasks) t->set_cancel_channel(cancel_channel_);
  absl::Status refused;
  {
    absl::MutexLock l(&mu_);
    if (accepting_) {
      for (auto& t : tasks) {
        t->set_id(next_id_++);
        pending_.push_back(std::move(t));
      }
      submitted_ += tasks.size();
      tasks.clear();
      wake_ = true;
    } else {
      refused = refuse_reason_;
    }
  }
  for (auto& t : tasks) t->Cancel(refused);
  tasks.clear();
}

size_t MpiBackend::SuggestedChunkSize() const {
  return BatchSize(avg_task_ns_.load(std::memory_order_relaxed));
}

size_t MpiBackend::max_chunk_bytes() const {
  return std::min<size_t>(size_t{64} << 10, options_.max_frame_bytes / 4);
}

size_t MpiBackend::SuggestedWindow() const {
  size_t n = static_cast<size_t>(std::max(1, num_workers()));
  size_t b = BatchSize(avg_task_ns_.load(std::memory_order_relaxed));
  return std::clamp<size_t>(n * (2 * b + 1), 2 * n, 4 * kMaxBatch);
}

std::vector<int> MpiBackend::WorkerPids() const {
  absl::MutexLock l(&mu_);
  std::vector<int> out;
  for (const AgentSnapshot& a : snapshots_) {
    if (a.ready && !a.lost && a.pid > 0) out.push_back(a.pid);
  }
  return out;
}

PoolStats MpiBackend::Stats() const {
  PoolStats out;
  absl::MutexLock l(&mu_);
  for (const AgentSnapshot& a : snapshots_) {
    if (a.rank == 0) continue;
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
  out.submitted = submitted_;
  out.succeeded = succeeded_.load(std::memory_order_relaxed);
  out.failed = failed_.load(std::memory_order_relaxed);
  out.pending = pending_.size();
  out.in_flight = in_flight_;
  out.callback_errors = callback_errors_->load(std::memory_order_relaxed);
  return out;
}

std::vector<AgentSnapshot> MpiBackend::Agents() const {
  absl::MutexLock l(&mu_);
  std::vector<AgentSnapshot> out;
  for (const AgentSnapshot& a : snapshots_) {
    if (a.rank != 0) out.push_back(a);
  }
  return out;
}

std::string MpiBackend::DescribeTask(const TaskState& t) const {
  const uint32_t task = t.task() & ~kChunkBit;
  const char* what = (t.task() & kChunkBit) ? "a chunk of task '" : "task '";
  if (task < tasks_.size()) {
    return absl::StrCat(what, tasks_[task].name, "' (input #", t.index(), ")");
  }
  return absl::StrCat("task #", task, " (input #", t.index(), ")");
}

std::string MpiBackend::DescribeAgent(const Agent& a) const {
  return a.host.empty()
             ? absl::StrCat("MPI rank ", a.rank)
             : absl::StrCat("MPI rank ", a.rank, " (", a.host, ", pid ", a.pid, ")");
}

void MpiBackend::PublishAgent(const Agent& a) {
  int total = 0;
  for (const auto& other : agents_) {
    if (other != nullptr && other->ready && !other->lost) total += other->workers;
  }
  total_workers_.store(total, std::memory_order_relaxed);
  absl::MutexLock l(&mu_);
  AgentSnapshot& s = snapshots_[static_cast<size_t>(a.rank)];
  s.rank = a.rank;
  s.host = a.host;
  s.pid = a.pid;
  s.workers = a.workers;
  s.ready = a.ready;
  s.lost = a.lost;
  s.lost_reason = a.lost_reason;
  s.tasks_done = a.tasks_done;
  s.in_flight = a.inflight.size();
}

void MpiBackend::Wake() {
  absl::MutexLock l(&mu_);
  wake_ = true;
}

void MpiBackend::Finish(TaskState& t, absl::Status status, std::string payload) {
  if (t.Done()) return;
  if (ChunkState* chunk = t.AsChunk()) {  // count its items
    const size_t failed = chunk->CountFailed(status.ok());
    failed_.fetch_add(failed, std::memory_order_relaxed);
    succeeded_.fetch_add(chunk->size() - failed, std::memory_order_relaxed);
  } else {
    (status.ok() ? succeeded_ : failed_).fetch_add(1, std::memory_order_relaxed);
  }
  t.Complete(std::move(status), std::move(payload));
}

// ---------------------------------------------------------------------------
// The I/O thread

void MpiBackend::SendTo(Agent& a, int tag, std::string bytes) {
  if (a.lost) return;
  absl::Status s = transport_->Send(a.rank, tag, std::move(bytes));
  if (!s.ok()) {
    LoseAgent(a, absl::StrCat("sending to it failed: ", s.message()));
    return;
  }
  a.last_sent = absl::Now();
}

void MpiBackend::IoLoop() {
  // Start every agent's local pool.
  AgentConfig config;
  config.plugins = options_.plugins;
  config.worker_path = options_.worker_path;
  config.max_workers = options_.max_workers;
  config.max_tasks_per_child = options_.max_tasks_per_child;
  config.max_worker_rss_bytes = options_.max_worker_rss_bytes;
  config.kill_grace_ns = absl::ToInt64Nanoseconds(options_.kill_grace);
  config.forward_worker_stderr = options_.forward_worker_stderr;
  config.stderr_tail_lines = options_.stderr_tail_lines;
  config.start_timeout_ns = absl::ToInt64Nanoseconds(options_.start_timeout);
  config.max_frame_bytes = options_.max_frame_bytes;
  config.init_task = options_.initializer.task;
  config.init_fingerprint = options_.initializer.fingerprint;
  config.init_args = options_.initializer.args;
  config.heartbeat_ns = absl::ToInt64Nanoseconds(options_.mpi.heartbeat_interval);
  config.agent_timeout_ns = absl::ToInt64Nanoseconds(options_.mpi.agent_timeout);
  const std::string config_bytes = EncodeMpiMessage(epoch_, config);
  for (auto& a : agents_) {
    if (a == nullptr || a->lost) continue;
    a->contacted = true;
    SendTo(*a, kTagConfig, config_bytes);
  }

  Stop stop = Stop::kNo;
  PollPacer pacer;
  pacer.Activity(absl::Now());
  while (true) {
    bool progress = false;
    for (int i = 0; i < 256; ++i) {
      absl::StatusOr<std::optional<MpiMessage>> m = transport_->Poll();
      if (!m.ok()) {
        BreakPool(m.status());
        break;
      }
      if (!m->has_value()) break;
      progress = true;
      HandleMessage(**m);
    }
    HandleCancelRequests();
    if (!started_io_) CheckStart();
    CheckAgents();

    bool broken;
    size_t in_flight;
    {
      absl::MutexLock l(&mu_);
      stop = stop_;
      broken = broken_;
      in_flight = in_flight_;
      if (stop == Stop::kForce ||
          (stop == Stop::kGraceful && pending_.empty() && in_flight_ == 0)) {
        break;
      }
    }
    if (started_io_ && !broken) Dispatch();

    const absl::Time now = absl::Now();
    if (progress || transport_->pending_sends() > 0) pacer.Activity(now);
    if (progress) continue;
    // Nothing came in: wait a little (see PollPacer), waking at once for
    // new tasks, cancellations and shutdown.
    const absl::Duration busy_cap = std::clamp(
        absl::Nanoseconds(avg_task_ns_.load(std::memory_order_relaxed) / 20),
        kMinBusyPoll, kMaxBusyPoll);
    const absl::Duration wait = pacer.Next(now, in_flight > 0, busy_cap);
    bool woken = false;
    if (wait == absl::ZeroDuration()) {
      std::this_thread::yield();
      absl::MutexLock l(&mu_);
      woken = wake_;
      wake_ = false;
    } else {
      absl::MutexLock l(&mu_);
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return wake_; };
      woken = mu_.AwaitWithTimeout(absl::Condition(&wake), wait);
      wake_ = false;
    }
    if (woken) pacer.Activity(absl::Now());
  }
  StopAgents(/*graceful=*/stop == Stop::kGraceful);
  absl::MutexLock l(&mu_);
  io_done_ = true;
}

void MpiBackend::HandleMessage(MpiMessage& m) {
  if (m.source <= 0 || static_cast<size_t>(m.source) >= agents_.size()) return;
  Agent& a = *agents_[static_cast<size_t>(m.source)];
  if (a.lost) return;
  if (MpiMessageEpoch(m.bytes) != epoch_) return;  // an earlier pool's
  a.last_heard = absl::Now();
  switch (m.tag) {
    case kTagHello:
      return HandleHello(a, m);
    case kTagResults:
      return HandleResults(a, m);
    case kTagStopped:
      a.stopped = true;
      return;
    case kTagHeartbeat:
      return;
    default:
      LoseAgent(a, absl::StrCat("protocol error: unexpected MPI tag ", m.tag));
  }
}

void MpiBackend::HandleHello(Agent& a, const MpiMessage& m) {
  absl::StatusOr<AgentHello> hello = DecodeMpiMessage<AgentHello>(m.bytes, "hello");
  if (!hello.ok()) {
    absl::MutexLock l(&mu_);
    if (start_error_.ok()) {
      start_error_ = absl::DataLossError(absl::StrCat(
          "MPI rank ", a.rank, ": ", hello.status().message()));
    }
    return;
  }
  a.host = hello->host;
  a.pid = hello->pid;
  if (!hello->error.empty()) {
    a.stopped = true;  // its pool did not start
    absl::MutexLock l(&mu_);
    if (start_error_.ok()) {
      start_error_ = absl::Status(
          static_cast<absl::StatusCode>(hello->error_code),
          absl::StrCat("MPI agent ", DescribeAgent(a), ": ", hello->error));
    }
    return;
  }
  std::vector<TaskInfo> tasks;
  for (const RemoteTask& t : hello->tasks) {
    tasks.push_back(TaskInfo{t.name, t.plugin, t.fingerprint, t.signature});
  }
  // The first agent's manifest is the pool's; every other must be the same.
  const Agent* first = nullptr;
  for (const auto& other : agents_) {
    if (other != nullptr && other->ready) {
      first = other.get();
      break;
    }
  }
  if (first == nullptr) {
    tasks_ = std::move(tasks);
    task_index_.clear();
    for (uint32_t i = 0; i < tasks_.size(); ++i) task_index_[tasks_[i].name] = i;
  } else {
    std::string difference;
    const size_t n = std::max(tasks.size(), tasks_.size());
    for (size_t i = 0; i < n && difference.empty(); ++i) {
      auto show = [](const std::vector<TaskInfo>& v, size_t i) {
        return i < v.size() ? absl::StrCat("'", v[i].name, "' ", v[i].signature,
                                           " from ", v[i].plugin)
                            : std::string("nothing");
      };
      if (i >= tasks.size() || i >= tasks_.size() || tasks[i].name != tasks_[i].name ||
          tasks[i].fingerprint != tasks_[i].fingerprint) {
        difference = absl::StrCat("task #", i, " is ", show(tasks_, i), " on ",
                                  DescribeAgent(*first), " but ", show(tasks, i),
                                  " on ", DescribeAgent(a));
      }
    }
    if (!difference.empty()) {
      absl::MutexLock l(&mu_);
      if (start_error_.ok()) {
        start_error_ = absl::FailedPreconditionError(absl::StrCat(
            "the plugin manifests differ between MPI ranks: ", difference,
            "; every node must load the same plugin files"));
      }
      // Its pool started: it is stopped with the others.
      a.ready = true;
      a.workers = 0;
      return;
    }
  }
  a.ready = true;
  a.workers = std::max(1, hello->workers);
  PublishAgent(a);
}

void MpiBackend::CheckStart() {
  bool all = true;
  std::vector<int> missing;
  for (const auto& a : agents_) {
    if (a == nullptr || !a->contacted || a->lost) continue;
    if (!a->ready && !a->stopped) {
      all = false;
      missing.push_back(a->rank);
    }
  }
  absl::MutexLock l(&mu_);
  if (!start_error_.ok()) {
    start_done_ = true;  // Start() returns the error; the loop stops
    stop_ = Stop::kForce;
    return;
  }
  if (all) {
    bool any = false;
    for (const auto& a : agents_) any = any || (a != nullptr && a->ready && !a->lost);
    if (!any) {
      start_error_ = absl::UnavailableError("no MPI agent rank started a pool");
      stop_ = Stop::kForce;
    }
    started_io_ = any;
    start_done_ = true;
    return;
  }
  if (absl::Now() >= start_deadline_) {
    start_error_ = absl::DeadlineExceededError(absl::StrCat(
        "MPI agent rank(s) ", absl::StrJoin(missing, ", "),
        " did not start their pools within ",
        absl::FormatDuration(options_.start_timeout),
        " (does every rank other than 0 run Session::ServeAsAgent()?)"));
    start_done_ = true;
    stop_ = Stop::kForce;
  }
}

void MpiBackend::CheckAgents() {
  const absl::Time now = absl::Now();
  for (auto& ap : agents_) {
    if (ap == nullptr || ap->lost || !ap->contacted) continue;
    Agent& a = *ap;
    if (a.ready && now - a.last_heard > options_.mpi.agent_timeout) {
      LoseAgent(a, absl::StrCat("no message from it for ",
                                absl::FormatDuration(now - a.last_heard),
                                " (MpiOptions::agent_timeout is ",
                                absl::FormatDuration(options_.mpi.agent_timeout),
                                ")"));
      continue;
    }
    if (now - a.last_sent >= options_.mpi.heartbeat_interval) {
      SendTo(a, kTagHeartbeat, EncodeMpiMessage(epoch_, Heartbeat{}));
    }
  }
}

void MpiBackend::LoseAgent(Agent& a, const std::string& why) {
  if (a.lost) return;
  a.lost = true;
  a.lost_reason = absl::StrCat("remote worker rank ", a.rank, " lost: ", why);
  transport_->Abandon(a.rank);
  MpiWorld::Get().MarkLost(a.rank);
  std::vector<std::shared_ptr<TaskState>> inflight;
  for (auto& [id, t] : a.inflight) inflight.push_back(std::move(t));
  a.inflight.clear();
  a.inflight_items = 0;
  // Oldest first, so that re-queued tasks keep their order.
  std::sort(inflight.begin(), inflight.end(),
            [](const auto& x, const auto& y) { return x->id() < y->id(); });
  bool others = false;
  for (const auto& other : agents_) {
    others = others || (other != nullptr && other->ready && !other->lost);
  }
  const bool requeue = options_.mpi.requeue_on_agent_loss && others;
  std::vector<std::shared_ptr<TaskState>> failed;
  {
    absl::MutexLock l(&mu_);
    in_flight_ -= inflight.size();
    for (auto it = inflight.rbegin(); it != inflight.rend(); ++it) {
      if ((*it)->Done()) continue;
      (*it)->crashes().push_back(a.lost_reason);
      if (requeue) {
        (*it)->Requeue();
        pending_.push_front(*it);
      } else {
        failed.push_back(*it);
      }
    }
  }
  for (auto& t : failed) {
    Finish(*t, absl::AbortedError(absl::StrCat(DescribeTask(*t), " failed: ",
                                               a.lost_reason, " while it ran there")));
  }
  PublishAgent(a);
  if (!others) {
    BreakPool(absl::UnavailableError(absl::StrCat(
        "every MPI agent rank is lost; the last: ", a.lost_reason)));
  }
}

void MpiBackend::BreakPool(absl::Status why) {
  std::deque<std::shared_ptr<TaskState>> pending;
  {
    absl::MutexLock l(&mu_);
    accepting_ = false;
    broken_ = true;
    refuse_reason_ = why;
    pending.swap(pending_);
  }
  for (auto& t : pending) {
    if (t->TryDispatch()) Finish(*t, why);
  }
  size_t failed = 0;
  for (auto& a : agents_) {
    if (a == nullptr) continue;
    for (auto& [id, t] : a->inflight) Finish(*t, why);
    failed += a->inflight.size();
    a->inflight.clear();
    a->inflight_items = 0;
  }
  absl::MutexLock l(&mu_);
  in_flight_ -= failed;
  if (start_error_.ok() && !start_done_) start_error_ = why;
}

void MpiBackend::HandleResults(Agent& a, const MpiMessage& m) {
  absl::StatusOr<RemoteResults> results =
      DecodeMpiMessage<RemoteResults>(m.bytes, "results");
  if (!results.ok()) {
    LoseAgent(a, std::string(results.status().message()));
    return;
  }
  std::vector<std::pair<std::shared_ptr<TaskState>, RemoteResult*>> answered;
  answered.reserve(results->results.size());
  for (RemoteResult& r : results->results) {
    auto node = a.inflight.extract(r.id);
    if (node.empty()) continue;  // cancelled here already
    a.inflight_items -= std::min(a.inflight_items, Items(*node.mapped()));
    answered.emplace_back(std::move(node.mapped()), &r);
  }
  if (!answered.empty()) {
    absl::MutexLock l(&mu_);
    in_flight_ -= answered.size();
  }
  a.tasks_done += answered.size();
  for (auto& [t, r] : answered) {
    if (ChunkState* chunk = t->AsChunk(); chunk != nullptr && !r->items.empty()) {
      ApplyChunkResult(a, *chunk, *r);
      continue;
    }
    if (r->code == 0) {
      Finish(*t, absl::OkStatus(), std::move(r->payload));
      continue;
    }
    absl::Status status(static_cast<absl::StatusCode>(r->code),
                        absl::StrCat(r->message, " [on ", DescribeAgent(a), "]"));
    if (!r->exception_type.empty() || !r->exception_what.empty()) {
      SetExceptionPayloads(status, r->exception_type, r->exception_what);
    }
    Finish(*t, std::move(status));
  }
  if (results->avg_task_ns > 0) {
    uint64_t avg = avg_task_ns_.load(std::memory_order_relaxed);
    avg_task_ns_.store(avg == 0 ? results->avg_task_ns
                                : (avg * 7 + results->avg_task_ns) / 8,
                       std::memory_order_relaxed);
  }
  PublishAgent(a);
}

void MpiBackend::ApplyChunkResult(Agent& a, ChunkState& chunk, RemoteResult& r) {
  if (chunk.Done()) return;
  // Runs of answered items go in with one Accept; a failed item takes the
  // place of the first unanswered one.
  std::vector<std::string*> run;
  auto flush = [&]() -> absl::Status {
    if (run.empty()) return absl::OkStatus();
    size_t n = 0;
    absl::StatusOr<bool> all = chunk.Accept(OkChunkAnswer(run), &n);
    run.clear();
    return all.status();
  };
  for (RemoteResult& item : r.items) {
    if (chunk.unanswered() == run.size()) break;  // more answers than items
    if (item.code == 0) {
      run.push_back(&item.payload);
      continue;
    }
    if (absl::Status s = flush(); !s.ok()) {
      Finish(chunk, absl::DataLossError(absl::StrCat(
                        DescribeTask(chunk), ": ", DescribeAgent(a),
                        " answered a malformed chunk: ", s.message())));
      return;
    }
    absl::Status why(static_cast<absl::StatusCode>(item.code),
                     absl::StrCat(item.message, " [on ", DescribeAgent(a), "]"));
    if (!item.exception_type.empty() || !item.exception_what.empty()) {
      SetExceptionPayloads(why, item.exception_type, item.exception_what);
    }
    chunk.FailRunning(0, std::move(why));
  }
  if (absl::Status s = flush(); !s.ok()) {
    Finish(chunk, absl::DataLossError(absl::StrCat(
                      DescribeTask(chunk), ": ", DescribeAgent(a),
                      " answered a malformed chunk: ", s.message())));
    return;
  }
  // Items the agent did not answer (it never leaves any) fail with this.
  Finish(chunk, chunk.unanswered() == 0
                    ? absl::OkStatus()
                    : absl::InternalError(absl::StrCat(
                          DescribeTask(chunk), ": ", DescribeAgent(a),
                          " left items of the chunk unanswered")));
}

void MpiBackend::HandleCancelRequests() {
  std::vector<uint64_t> ids;
  {
    absl::MutexLock l(&mu_);
    ids.swap(cancel_requests_);
  }
  if (ids.empty()) return;
  absl::flat_hash_map<int, std::vector<uint64_t>> by_rank;
  size_t resolved = 0;
  for (uint64_t id : ids) {
    for (auto& ap : agents_) {
      if (ap == nullptr || ap->lost) continue;
      auto node = ap->inflight.extract(id);
      if (node.empty()) continue;
      TaskState& t = *node.mapped();
      ap->inflight_items -= std::min(ap->inflight_items, Items(t));
      Finish(t, absl::CancelledError(absl::StrCat(
                    DescribeTask(t), " was cancelled; ", DescribeAgent(*ap),
                    " was told to stop it")));
      by_rank[ap->rank].push_back(id);
      ++resolved;
      break;
    }
  }
  if (resolved > 0) {
    absl::MutexLock l(&mu_);
    in_flight_ -= resolved;
  }
  for (auto& [rank, list] : by_rank) {
    SendTo(*agents_[static_cast<size_t>(rank)], kTagCancel,
           EncodeMpiMessage(epoch_, list));
  }
}

void MpiBackend::Dispatch() {
  std::vector<Agent*> ready;
  size_t total_workers = 0;
  for (auto& a : agents_) {
    if (a != nullptr && a->ready && !a->lost && a->workers > 0) {
      ready.push_back(a.get());
      total_workers += static_cast<size_t>(a->workers);
    }
  }
  if (ready.empty()) return;
  const uint64_t avg = avg_task_ns_.load(std::memory_order_relaxed);
  const size_t auto_batch = BatchSize(avg);
  // As in PoolCore: short tasks keep a second batch queued per worker; tasks
  // of unknown or long duration go one per worker at a time.
  const bool pipeline = avg != 0 && avg < kPipelineBelowNs;
  const size_t budget =
      std::max<size_t>(1, std::min(kMaxMessageBytes, options_.max_frame_bytes / 2));
  std::vector<std::pair<Agent*, std::vector<RemoteCall>>> out;
  {
    absl::MutexLock l(&mu_);
    if (pending_.empty()) return;
    const size_t pending_at_start = pending_.size();
    for (size_t k = 0; k < ready.size() && !pending_.empty(); ++k) {
      Agent& a = *ready[(rr_next_ + k) % ready.size()];
      const size_t per_worker = pipeline ? 2 * auto_batch : auto_batch;
      const size_t window =
          std::min<size_t>(static_cast<size_t>(a.workers) * per_worker, 4 * kMaxBatch);
      if (a.inflight_items >= window) continue;
      size_t take = window - a.inflight_items;
      // Spread a short queue over the agents by their worker counts.
      const size_t share =
          (pending_at_start * static_cast<size_t>(a.workers) + total_workers - 1) /
          total_workers;
      take = std::min(take, std::max<size_t>(1, share));
      std::vector<RemoteCall> calls;
      size_t bytes = 0;
      while (take > 0 && !pending_.empty()) {
        const std::shared_ptr<TaskState>& next = pending_.front();
        if (bytes > 0 && bytes + next->args().size() > budget) {
          out.emplace_back(&a, std::move(calls));
          calls.clear();
          bytes = 0;
        }
        std::shared_ptr<TaskState> t = std::move(pending_.front());
        pending_.pop_front();
        if (!t->TryDispatch()) continue;  // cancelled while queued
        RemoteCall c;
        c.id = t->id();
        c.task = t->task();
        c.index = t->index();
        c.timeout_ns = t->policy().timeout == absl::InfiniteDuration()
                           ? -1
                           : absl::ToInt64Nanoseconds(t->policy().timeout);
        c.retries = t->policy().retries;
        if (ChunkState* chunk = t->AsChunk()) c.index = chunk->UnansweredIndex(0);
        c.args = t->args();
        bytes += c.args.size() + kCallOverhead;
        calls.push_back(std::move(c));
        const size_t items = Items(*t);
        a.inflight_items += items;
        a.inflight.emplace(t->id(), std::move(t));
        ++in_flight_;
        take -= std::min(take, items);
      }
      if (!calls.empty()) out.emplace_back(&a, std::move(calls));
    }
    ++rr_next_;
  }
  // A send that fails loses the agent, which re-queues what it held.
  for (auto& [a, calls] : out) {
    SendTo(*a, kTagCalls, EncodeMpiMessage(epoch_, calls));
  }
}

void MpiBackend::StopAgents(bool graceful) {
  // Tasks still out are cancelled; the agents stop their pools and answer.
  size_t cancelled = 0;
  for (auto& ap : agents_) {
    if (ap == nullptr) continue;
    for (auto& [id, t] : ap->inflight) {
      Finish(*t, absl::CancelledError(absl::StrCat(
                     DescribeTask(*t), " was cancelled: the pool was destroyed "
                     "while it ran on ", DescribeAgent(*ap))));
      ++cancelled;
    }
    ap->inflight.clear();
    ap->inflight_items = 0;
    if (ap->contacted && !ap->lost && !ap->stopped) {
      SendTo(*ap, kTagStop, EncodeMpiMessage(epoch_, Heartbeat{}));
    }
  }
  std::deque<std::shared_ptr<TaskState>> pending;
  {
    absl::MutexLock l(&mu_);
    in_flight_ -= cancelled;
    pending.swap(pending_);
  }
  for (auto& t : pending) {
    t->Cancel(absl::CancelledError("the pool was destroyed before the task ran"));
  }
  // Wait for every agent to say its pool stopped, so the next pool of this
  // job finds them free; an agent that does not answer in time is lost.
  const absl::Time deadline =
      absl::Now() + options_.kill_grace +
      std::min(options_.mpi.agent_timeout, absl::Seconds(graceful ? 10 : 5));
  while (true) {
    bool waiting = false;
    for (auto& ap : agents_) {
      waiting = waiting || (ap != nullptr && ap->contacted && !ap->lost && !ap->stopped);
    }
    if (!waiting) break;
    if (absl::Now() >= deadline) {
      for (auto& ap : agents_) {
        if (ap != nullptr && ap->contacted && !ap->lost && !ap->stopped) {
          LoseAgent(*ap, "it did not confirm that its pool stopped");
        }
      }
      break;
    }
    absl::StatusOr<std::optional<MpiMessage>> m = transport_->Poll();
    if (!m.ok()) break;
    if (m->has_value()) {
      HandleMessage(**m);
    } else {
      absl::SleepFor(absl::Microseconds(200));
    }
  }
}

}  // namespace procpool::internal
