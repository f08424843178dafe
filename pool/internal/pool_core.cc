#include "pool/internal/pool_core.h"

#include <limits.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "pool/internal/child_process.h"
#include "pool/internal/shared_memory.h"
#include "pool/internal/status_macros.h"
#include "pool/internal/wire.h"
#include "pool/runfiles.h"

namespace procpool::internal {

// One worker process and everything the I/O thread keeps about it.
class WorkerConnection {
 public:
  WorkerConnection(size_t slot, uint32_t generation, ChildProcess proc,
                   UniqueFd sock, SharedMemory status, size_t max_frame)
      : slot(slot),
        generation(generation),
        proc(std::move(proc)),
        sock(std::move(sock)),
        status(std::move(status)),
        decoder(max_frame) {}

  const WorkerStatusPage& page() const {
    return *static_cast<const WorkerStatusPage*>(status.data());
  }
  uint64_t epoll_tag() const { return (uint64_t{slot} << 32) | generation; }

  const size_t slot;
  const uint32_t generation;
  ChildProcess proc;
  UniqueFd sock;
  SharedMemory status;
  FrameDecoder decoder;
  std::string out;       // bytes not yet written to the socket
  size_t out_off = 0;
  bool want_write = false;
  bool ready = false;    // hello received
  bool dead = false;
  absl::Status hello_error;
  // Sent and not yet answered, in the order the worker runs them.
  std::deque<std::shared_ptr<TaskState>> inflight;
};

namespace {

constexpr uint64_t kWakeTag = ~uint64_t{0};
constexpr size_t kMaxBatch = 4096;
constexpr uint64_t kTargetBatchNs = 1'000'000;   // 1 ms of work per batch
constexpr size_t kMaxBatchBytes = size_t{1} << 20;

size_t BatchSize(uint64_t avg_ns) {
  if (avg_ns == 0) return 1;  // nothing measured yet: one at a time
  return std::clamp<size_t>(kTargetBatchNs / avg_ns, 1, kMaxBatch);
}

std::string AbsolutePath(const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  char cwd[PATH_MAX];
  if (::getcwd(cwd, sizeof(cwd)) == nullptr) return path;
  return absl::StrCat(cwd, "/", path);
}

absl::Status TaskFailure(absl::StatusCode code, std::string message) {
  return absl::Status(code, message);
}

}  // namespace

// ---------------------------------------------------------------------------
// Setup and teardown

PoolCore::PoolCore(PoolOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<PoolCore>> PoolCore::Start(PoolOptions options) {
  if (options.max_workers <= 0) {
    options.max_workers =
        std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  }
  if (options.worker_path.empty()) {
    PROCPOOL_ASSIGN_OR_RETURN(options.worker_path, DefaultWorkerPath());
  }
  for (std::string& p : options.plugins) {
    p = AbsolutePath(p);
    if (::access(p.c_str(), F_OK) != 0) {
      return ErrnoToStatus(absl::StrCat("plugin ", p), errno);
    }
  }
  std::unique_ptr<PoolCore> core(new PoolCore(std::move(options)));
  core->epoll_fd_.Reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!core->epoll_fd_) return ErrnoToStatus("epoll_create1", errno);
  core->wake_fd_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!core->wake_fd_) return ErrnoToStatus("eventfd", errno);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeTag;
  if (::epoll_ctl(core->epoll_fd_.get(), EPOLL_CTL_ADD, core->wake_fd_.get(),
                  &ev) != 0) {
    return ErrnoToStatus("epoll_ctl(eventfd)", errno);
  }

  core->io_thread_ = std::thread([c = core.get()] { c->IoLoop(); });

  PoolCore* c = core.get();
  const size_t n = static_cast<size_t>(c->options_.max_workers);
  absl::Status error;
  {
    absl::MutexLock l(&c->mu_);
    auto started = [c, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu_) {
      return c->hellos_ == n || !c->start_error_.ok() || c->io_done_;
    };
    if (!c->mu_.AwaitWithTimeout(absl::Condition(&started),
                                 c->options_.start_timeout)) {
      error = absl::DeadlineExceededError(absl::StrCat(
          "workers did not load their plugins within ",
          absl::FormatDuration(c->options_.start_timeout)));
    } else if (!c->start_error_.ok()) {
      error = c->start_error_;
    }
  }
  if (!error.ok()) return error;  // ~PoolCore stops what was started
  return core;
}

PoolCore::~PoolCore() {
  Shutdown(/*wait=*/false, /*cancel_pending=*/true);
  {
    absl::MutexLock l(&mu_);
    stop_ = Stop::kForce;
  }
  Wake();
  if (io_thread_.joinable()) io_thread_.join();
}

void PoolCore::Shutdown(bool wait, bool cancel_pending) {
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
  }
  Wake();
  if (wait) {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(&io_done_));
  }
}

// ---------------------------------------------------------------------------
// Task lookup and submission

absl::StatusOr<uint32_t> PoolCore::FindTask(absl::string_view name,
                                            uint64_t fingerprint,
                                            absl::string_view readable) const {
  auto it = task_index_.find(name);
  if (it == task_index_.end()) {
    std::vector<std::string> names;
    for (const TaskInfo& t : tasks_) names.push_back(t.name);
    std::vector<std::string> plugins = options_.plugins;
    return absl::NotFoundError(absl::StrCat(
        "unknown task '", name, "': the plugins (", absl::StrJoin(plugins, ", "),
        ") register ",
        names.empty() ? std::string("no tasks")
                      : absl::StrCat("[", absl::StrJoin(names, ", "), "]")));
  }
  const TaskInfo& t = tasks_[it->second];
  if (t.fingerprint != fingerprint) {
    return absl::InvalidArgumentError(absl::StrCat(
        "signature mismatch for task '", name, "': plugin ", t.plugin,
        " defines ", t.signature, ", the caller expects ", readable));
  }
  return it->second;
}

void PoolCore::Enqueue(std::shared_ptr<TaskState> task) {
  absl::Status refused;
  {
    absl::MutexLock l(&mu_);
    if (accepting_) {
      task->set_id(next_id_++);
      pending_.push_back(std::move(task));
    } else {
      refused = refuse_reason_;
    }
  }
  if (!refused.ok()) {
    task->Cancel(refused);
    return;
  }
  Wake();
}

void PoolCore::EnqueueMany(std::vector<std::shared_ptr<TaskState>>& tasks) {
  absl::Status refused;
  {
    absl::MutexLock l(&mu_);
    if (accepting_) {
      for (auto& t : tasks) {
        t->set_id(next_id_++);
        pending_.push_back(std::move(t));
      }
      tasks.clear();
    } else {
      refused = refuse_reason_;
    }
  }
  for (auto& t : tasks) t->Cancel(refused);
  tasks.clear();
  Wake();
}

size_t PoolCore::SuggestedWindow() const {
  size_t n = static_cast<size_t>(options_.max_workers);
  size_t b = BatchSize(avg_task_ns_.load(std::memory_order_relaxed));
  return std::clamp<size_t>(n * (2 * b + 1), 2 * n, 4 * kMaxBatch);
}

void PoolCore::Wake() {
  if (!wake_pending_.exchange(true)) {
    uint64_t one = 1;
    ssize_t r = ::write(wake_fd_.get(), &one, sizeof(one));
    (void)r;  // EAGAIN means the counter is already non-zero: awake anyway
  }
}

std::string PoolCore::DescribeTask(const TaskState& t) const {
  return absl::StrCat("task '", tasks_[t.task()].name, "' (input #", t.index(),
                      ")");
}

// ---------------------------------------------------------------------------
// The I/O thread

void PoolCore::SpawnWorker(size_t slot) {
  static std::atomic<uint32_t> generation{0};
  auto fail = [&](absl::Status s) {
    ++consecutive_start_failures_;
    bool started;
    {
      absl::MutexLock l(&mu_);
      started = hellos_ >= static_cast<size_t>(options_.max_workers);
      if (!started && start_error_.ok()) start_error_ = s;
    }
    if (started && consecutive_start_failures_ >= 3) {
      BreakPool(absl::UnavailableError(absl::StrCat(
          "the pool is broken: could not start a replacement worker: ",
          s.message())));
    }
  };

  auto pair = MakeSocketPair();
  if (!pair.ok()) return fail(pair.status());
  // Keep the child's descriptors off the numbers it will see them under.
  auto child_sock = DupCloseOnExec(pair->second.get(), 10);
  if (!child_sock.ok()) return fail(child_sock.status());
  pair->second.Reset();
  auto status = SharedMemory::Create(kWorkerStatusPageSize);
  if (!status.ok()) return fail(status.status());
  auto status_fd = DupCloseOnExec(status->fd(), 10);
  if (!status_fd.ok()) return fail(status_fd.status());

  std::vector<std::string> argv = {
      options_.worker_path, "--fd=3", "--status-fd=4",
      absl::StrCat("--parent=", ::getpid()),
      absl::StrCat("--max-frame=", options_.max_frame_bytes)};
  argv.insert(argv.end(), options_.plugins.begin(), options_.plugins.end());
  auto proc = ChildProcess::Spawn(
      options_.worker_path, argv,
      {{child_sock->get(), 3}, {status_fd->get(), 4}},
      /*new_process_group=*/true);
  if (!proc.ok()) return fail(proc.status());

  UniqueFd sock = std::move(pair->first);
  if (absl::Status s = SetNonBlocking(sock.get(), true); !s.ok()) {
    return fail(s);
  }
  auto w = std::make_unique<WorkerConnection>(
      slot, generation.fetch_add(1) + 1, *std::move(proc), std::move(sock),
      *std::move(status), options_.max_frame_bytes);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.u64 = w->epoll_tag();
  if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, w->sock.get(), &ev) != 0) {
    return fail(ErrnoToStatus("epoll_ctl(worker)", errno));
  }
  if (slot >= workers_.size()) workers_.resize(slot + 1);
  {
    absl::MutexLock l(&mu_);
    if (slot >= worker_pids_.size()) worker_pids_.resize(slot + 1);
    worker_pids_[slot] = w->proc.pid();
  }
  workers_[slot] = std::move(w);
}

std::vector<int> PoolCore::WorkerPids() const {
  absl::MutexLock l(&mu_);
  std::vector<int> out;
  for (int pid : worker_pids_) {
    if (pid > 0) out.push_back(pid);
  }
  return out;
}

void PoolCore::IoLoop() {
  const size_t n = static_cast<size_t>(options_.max_workers);
  workers_.resize(n);
  for (size_t i = 0; i < n; ++i) SpawnWorker(i);

  epoll_event events[64];
  Stop stop = Stop::kNo;
  while (true) {
    int ready = ::epoll_wait(epoll_fd_.get(), events, 64, -1);
    if (ready < 0 && errno != EINTR) {
      BreakPool(ErrnoToStatus("epoll_wait", errno));
      break;
    }
    for (int i = 0; i < ready; ++i) {
      uint64_t tag = events[i].data.u64;
      if (tag == kWakeTag) {
        uint64_t v;
        ssize_t r = ::read(wake_fd_.get(), &v, sizeof(v));
        (void)r;
        continue;
      }
      size_t slot = static_cast<size_t>(tag >> 32);
      if (slot >= workers_.size() || workers_[slot] == nullptr) continue;
      WorkerConnection& w = *workers_[slot];
      if (w.epoll_tag() != tag || w.dead) continue;
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
        OnReadable(w);
      }
      if (!w.dead && (events[i].events & EPOLLOUT)) OnWritable(w);
    }
    wake_pending_.store(false);

    bool started;
    {
      absl::MutexLock l(&mu_);
      stop = stop_;
      started = hellos_ >= n;
      if (stop == Stop::kForce ||
          (stop == Stop::kGraceful && pending_.empty() && in_flight_ == 0)) {
        break;
      }
    }
    // Replace workers that died; during startup a death is an error instead.
    bool broken;
    {
      absl::MutexLock l(&mu_);
      broken = broken_;
    }
    for (size_t i = 0; i < workers_.size(); ++i) {
      if (workers_[i] != nullptr && workers_[i]->dead && started && !broken) {
        workers_[i].reset();
        SpawnWorker(i);
      }
    }
    Dispatch();
  }
  StopWorkers(/*graceful=*/stop == Stop::kGraceful);
  absl::MutexLock l(&mu_);
  io_done_ = true;
}

void PoolCore::OnReadable(WorkerConnection& w) {
  while (!w.dead) {
    char* space = w.decoder.WritableSpace(64 * 1024);
    ssize_t n = ::read(w.sock.get(), space, w.decoder.writable());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      HandleWorkerLoss(w, ErrnoToStatus("read from worker", errno));
      return;
    }
    if (n == 0) {
      HandleWorkerLoss(w, absl::OkStatus());
      return;
    }
    w.decoder.Commit(static_cast<size_t>(n));
    while (!w.dead) {
      absl::StatusOr<std::optional<Frame>> f = w.decoder.Next();
      if (!f.ok()) {
        HandleWorkerLoss(w, absl::DataLossError(absl::StrCat(
                                "protocol error from worker: ",
                                f.status().message())));
        return;
      }
      if (!f->has_value()) break;
      HandleFrame(w, static_cast<uint8_t>((*f)->type), (*f)->payload);
    }
  }
}

void PoolCore::HandleFrame(WorkerConnection& w, uint8_t type,
                           std::string_view payload) {
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
  HandleWorkerLoss(w, absl::DataLossError(absl::StrCat(
                          "protocol error from worker: unexpected frame type ",
                          type)));
}

void PoolCore::HandleHello(WorkerConnection& w, std::string_view payload) {
  absl::StatusOr<HelloMsg> hello = DecodeMessage<HelloMsg>(payload, "hello");
  if (!hello.ok()) return HandleWorkerLoss(w, hello.status());
  if (!hello->error.empty()) {
    w.hello_error = absl::Status(static_cast<absl::StatusCode>(hello->error_code),
                                 hello->error);
    return HandleWorkerLoss(w, w.hello_error);
  }
  std::vector<TaskInfo> tasks;
  for (const PluginManifest& p : hello->plugins) {
    for (const TaskManifest& t : p.tasks) {
      tasks.push_back(TaskInfo{t.name, p.path, t.fingerprint, t.signature});
    }
  }
  bool first;
  {
    absl::MutexLock l(&mu_);
    first = hellos_ == 0;
  }
  if (first) {
    // Published to other threads by the hellos_ update below.
    tasks_ = std::move(tasks);
    for (uint32_t i = 0; i < tasks_.size(); ++i) task_index_[tasks_[i].name] = i;
  } else {
    bool same = tasks.size() == tasks_.size();
    for (size_t i = 0; same && i < tasks.size(); ++i) {
      same = tasks[i].name == tasks_[i].name &&
             tasks[i].fingerprint == tasks_[i].fingerprint;
    }
    if (!same) {
      w.hello_error = absl::FailedPreconditionError(absl::StrCat(
          "worker pid ", w.proc.pid(),
          " loaded plugins whose tasks differ from the first worker's "
          "(were the plugin files replaced while the pool ran?)"));
      return HandleWorkerLoss(w, w.hello_error);
    }
  }
  w.ready = true;
  consecutive_start_failures_ = 0;
  absl::MutexLock l(&mu_);
  ++hellos_;
}

void PoolCore::HandleResults(WorkerConnection& w, std::string_view payload) {
  absl::StatusOr<std::vector<ResultMsg>> results =
      DecodeMessage<std::vector<ResultMsg>>(payload, "results");
  if (!results.ok()) return HandleWorkerLoss(w, results.status());
  uint64_t total_ns = 0;
  size_t completed = 0;
  for (ResultMsg& r : *results) {
    if (w.inflight.empty() || w.inflight.front()->id() != r.id) {
      {
        absl::MutexLock l(&mu_);
        in_flight_ -= completed;
      }
      return HandleWorkerLoss(
          w, absl::DataLossError(absl::StrCat(
                 "protocol error from worker: it answered task id ", r.id,
                 " out of order")));
    }
    std::shared_ptr<TaskState> t = std::move(w.inflight.front());
    w.inflight.pop_front();
    total_ns += r.run_ns;
    ++completed;
    absl::Status status;
    switch (static_cast<ResultCode>(r.code)) {
      case ResultCode::kOk:
        break;
      case ResultCode::kBadArgs:
        status = absl::InvalidArgumentError(
            absl::StrCat(DescribeTask(*t), ": ", r.payload));
        break;
      case ResultCode::kException: {
        std::string type, what;
        try {
          serialize_internal::ViewStreambuf buf(r.payload.data(),
                                                r.payload.size());
          std::istream is(&buf);
          cereal::BinaryInputArchive ar(is);
          ar(type, what);
        } catch (...) {
          type = "unknown exception";
        }
        status = absl::UnknownError(
            absl::StrCat(DescribeTask(*t), " raised ", type, ": ", what));
        status.SetPayload("procpool/exception_type", absl::Cord(type));
        status.SetPayload("procpool/exception_what", absl::Cord(what));
        break;
      }
      default:
        status = absl::InternalError(
            absl::StrCat(DescribeTask(*t), ": worker could not run it: ",
                         r.payload));
        break;
    }
    if (status.ok()) {
      t->Complete(absl::OkStatus(), std::move(r.payload));
    } else {
      t->Complete(std::move(status));
    }
  }
  if (completed > 0) {
    uint64_t batch_avg = std::max<uint64_t>(1, total_ns / completed);
    uint64_t avg = avg_task_ns_.load(std::memory_order_relaxed);
    avg_task_ns_.store(avg == 0 ? batch_avg : (avg * 7 + batch_avg) / 8,
                       std::memory_order_relaxed);
    absl::MutexLock l(&mu_);
    in_flight_ -= completed;
  }
}

void PoolCore::HandleWorkerLoss(WorkerConnection& w, absl::Status reason) {
  if (w.dead) return;
  w.dead = true;
  ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, w.sock.get(), nullptr);
  w.sock.Reset();
  {
    absl::MutexLock l(&mu_);
    worker_pids_[w.slot] = 0;
  }
  // EOF means the process is exiting: SIGKILL cannot change how it ended.
  // Otherwise (garbage on the wire) it is stopped here.
  w.proc.Kill(SIGKILL);
  ExitStatus exit = w.proc.Wait();
  const uint64_t running = w.page().running_task.load(std::memory_order_acquire);
  const pid_t pid = w.proc.pid();

  std::string how =
      reason.ok()
          ? absl::StrCat("worker pid ", pid, " ", exit.ToString())
          : absl::StrCat("worker pid ", pid, " was stopped (", reason.message(),
                         ")");

  if (!w.ready) {
    // Died before saying hello: a startup failure, not a task failure.
    absl::Status s = w.hello_error.ok()
                         ? absl::InternalError(absl::StrCat(
                               how, " before it was ready (", options_.worker_path,
                               ")"))
                         : w.hello_error;
    ++consecutive_start_failures_;
    bool started;
    {
      absl::MutexLock l(&mu_);
      started = hellos_ >= static_cast<size_t>(options_.max_workers);
      if (!started && start_error_.ok()) start_error_ = s;
    }
    if (started && consecutive_start_failures_ >= 3) {
      BreakPool(absl::UnavailableError(absl::StrCat(
          "the pool is broken: replacement workers fail to start: ",
          s.message())));
    }
    return;
  }

  std::deque<std::shared_ptr<TaskState>> inflight = std::move(w.inflight);
  w.inflight.clear();
  std::shared_ptr<TaskState> victim;
  std::vector<std::shared_ptr<TaskState>> requeue;
  for (auto& t : inflight) {
    if (t->id() == running && running != 0) {
      victim = std::move(t);
    } else {
      requeue.push_back(std::move(t));
    }
  }
  {
    absl::MutexLock l(&mu_);
    in_flight_ -= inflight.size();
    for (auto it = requeue.rbegin(); it != requeue.rend(); ++it) {
      (*it)->Requeue();
      pending_.push_front(*it);
    }
  }
  if (victim) {
    victim->Complete(absl::AbortedError(absl::StrCat(
        DescribeTask(*victim), " failed: ", how, " while running it")));
  }
  if (options_.on_worker_death == WorkerDeathPolicy::kBreakPool) {
    BreakPool(absl::AbortedError(absl::StrCat(
        "BrokenPool: ", how,
        "; the pool is broken (WorkerDeathPolicy::kBreakPool)")));
  }
}

void PoolCore::BreakPool(absl::Status why) {
  std::deque<std::shared_ptr<TaskState>> pending;
  {
    absl::MutexLock l(&mu_);
    accepting_ = false;
    broken_ = true;
    refuse_reason_ = why;
    pending.swap(pending_);
  }
  for (auto& t : pending) {
    if (t->TryDispatch()) t->Complete(why);
  }
  size_t failed = 0;
  for (auto& w : workers_) {
    if (w == nullptr || w->dead) continue;
    w->dead = true;
    ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, w->sock.get(), nullptr);
    w->sock.Reset();
    w->proc.Kill(SIGKILL);
    w->proc.Wait();
    {
      absl::MutexLock l(&mu_);
      worker_pids_[w->slot] = 0;
    }
    for (auto& t : w->inflight) {
      t->Complete(why);
      ++failed;
    }
    w->inflight.clear();
  }
  absl::MutexLock l(&mu_);
  in_flight_ -= failed;
  if (start_error_.ok() && hellos_ < static_cast<size_t>(options_.max_workers)) {
    start_error_ = why;
  }
}

void PoolCore::Dispatch() {
  std::vector<WorkerConnection*> ready;
  for (auto& w : workers_) {
    if (w != nullptr && w->ready && !w->dead) ready.push_back(w.get());
  }
  if (ready.empty()) return;
  const size_t batch = BatchSize(avg_task_ns_.load(std::memory_order_relaxed));
  const size_t window = 2 * batch;
  {
    absl::MutexLock l(&mu_);
    bool progress = true;
    while (progress && !pending_.empty()) {
      progress = false;
      for (size_t k = 0; k < ready.size() && !pending_.empty(); ++k) {
        WorkerConnection& w = *ready[(rr_next_ + k) % ready.size()];
        if (w.inflight.size() >= window) continue;
        // Spread a short queue evenly instead of filling the first worker.
        size_t fair = (pending_.size() + ready.size() - 1) / ready.size();
        size_t take = std::min({batch, window - w.inflight.size(), fair});
        size_t mark = w.out.size();
        CallsFrameBuilder frame(&w.out);
        size_t bytes = 0;
        while (take > 0 && !pending_.empty() && bytes < kMaxBatchBytes) {
          std::shared_ptr<TaskState> t = std::move(pending_.front());
          pending_.pop_front();
          if (!t->TryDispatch()) continue;  // cancelled while queued
          frame.Add(t->id(), t->task(), t->args());
          bytes += t->args().size();
          w.inflight.push_back(std::move(t));
          --take;
          ++in_flight_;
          progress = true;
        }
        if (frame.Finish() == 0) w.out.resize(mark);
      }
    }
    ++rr_next_;
  }
  for (WorkerConnection* w : ready) {
    if (!w->out.empty() && !w->want_write) Flush(*w);
  }
}

void PoolCore::OnWritable(WorkerConnection& w) { Flush(w); }

void PoolCore::Flush(WorkerConnection& w) {
  while (w.out_off < w.out.size()) {
    ssize_t n = ::write(w.sock.get(), w.out.data() + w.out_off,
                        w.out.size() - w.out_off);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      // The worker is gone; its EOF (or this error) tells us how.
      HandleWorkerLoss(w, absl::OkStatus());
      return;
    }
    w.out_off += static_cast<size_t>(n);
  }
  if (w.out_off == w.out.size()) {
    w.out.clear();
    w.out_off = 0;
    if (w.out.capacity() > (16u << 20)) std::string().swap(w.out);
  }
  UpdateInterest(w);
}

void PoolCore::UpdateInterest(WorkerConnection& w) {
  bool want = !w.out.empty();
  if (want == w.want_write) return;
  w.want_write = want;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0);
  ev.data.u64 = w.epoll_tag();
  ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, w.sock.get(), &ev);
}

void PoolCore::StopWorkers(bool graceful) {
  // Closing our end is the request to exit: a worker finishes the task it is
  // running, reads EOF and exits.
  for (auto& w : workers_) {
    if (w == nullptr || w->dead) continue;
    ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, w->sock.get(), nullptr);
    w->sock.Reset();
    if (w->inflight.empty()) w->proc.Kill(SIGTERM);
  }
  size_t cancelled = 0;
  for (auto& w : workers_) {
    if (w == nullptr || w->dead) continue;
    w->dead = true;
    if (graceful && w->inflight.empty()) {
      if (!w->proc.WaitFor(absl::Seconds(2))) w->proc.TerminateOrKill(absl::Milliseconds(100));
    } else {
      w->proc.TerminateOrKill(absl::Milliseconds(100));
    }
    for (auto& t : w->inflight) {
      t->Complete(absl::CancelledError(absl::StrCat(
          DescribeTask(*t), " was cancelled: the pool was destroyed while it ran")));
      ++cancelled;
    }
    w->inflight.clear();
  }
  std::deque<std::shared_ptr<TaskState>> pending;
  {
    absl::MutexLock l(&mu_);
    in_flight_ -= cancelled;
    pending.swap(pending_);
    worker_pids_.clear();
  }
  for (auto& t : pending) {
    t->Cancel(absl::CancelledError("the pool was destroyed before the task ran"));
  }
}

}  // namespace procpool::internal
