#include "pool/internal/pool_core.h"

#include <limits.h>
#include <signal.h>
#include <poll.h>
#include <sys/epoll.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <chrono>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/strings/str_join.h"
#include "pool/internal/child_process.h"
#include "pool/internal/chunk_state.h"
#include "pool/internal/payload_region.h"
#include "pool/internal/shared_memory.h"
#include "pool/internal/status_macros.h"
#include "pool/internal/wire.h"
#include "pool/runfiles.h"

namespace procpool::internal {

// One worker process and everything the pool keeps about it. Guarded by
// the pool's io_mu_ (not expressible as an annotation here: the functions
// that take a WorkerConnection require io_mu_).
class WorkerConnection {
 public:
  WorkerConnection(size_t slot, uint32_t generation, ChildProcess proc,
                   UniqueFd sock, std::shared_ptr<SharedMemory> status,
                   size_t max_frame)
      : slot(slot),
        generation(generation),
        proc(std::move(proc)),
        sock(std::move(sock)),
        status(std::move(status)),
        decoder(max_frame) {}

  const WorkerStatusPage& page() const {
    return *static_cast<const WorkerStatusPage*>(status->data());
  }
  // Bit 0 tells the protocol socket (0) from the stderr pipe (1).
  uint64_t epoll_tag() const {
    return (uint64_t{slot} << 32) | (uint64_t{generation} << 1);
  }

  const size_t slot;
  const uint32_t generation;
  ChildProcess proc;
  UniqueFd sock;
  UniqueFd err;              // read end of the worker's stderr pipe
  std::string err_partial;   // an unfinished last line
  std::deque<std::string> err_tail;  // the latest complete lines
  std::shared_ptr<SharedMemory> status;
  FrameDecoder decoder;
  std::string out;       // bytes not yet written to the socket
  size_t out_off = 0;
  bool want_write = false;
  bool ready = false;    // hello received
  bool dead = false;
  // The socket is out of the I/O thread's epoll set, held for a caller:
  // parked by DispatchDirect for the waiter expected next (the I/O thread
  // takes it back at its next wake-up, at the latest when park_timer_
  // fires), or read by a waiter now (`assisting`, PoolCore::AssistWait).
  bool caller_owned = false;
  bool assisting = false;
  // Being stopped by the pool: SIGTERM sent, SIGKILL due at kill_at.
  bool stopping = false;
  absl::Time kill_at;
  absl::Status hello_error;
  uint64_t dispatched = 0;   // tasks sent, for max_tasks_per_child
  size_t timed_inflight = 0; // in-flight tasks that have a timeout
  // Sent and not yet answered, in the order the worker runs them.
  std::deque<std::shared_ptr<TaskState>> inflight;
  // Large payloads (PoolOptions::shared_memory_min_bytes): the call region
  // we write and the result region the worker writes (payload_region.h).
  PayloadRegion call_region{UniqueFd()};
  PayloadRegion result_region{UniqueFd()};
  // Id of the call whose arguments are in call_region (0: it is free).
  uint64_t call_region_task = 0;
  // A result the worker wrote over its call's arguments
  // (kRegionResultInCall) is still borrowed: no call goes there until its
  // lease, which may be dropped on any thread, clears this.
  std::shared_ptr<std::atomic<bool>> call_region_leased =
      std::make_shared<std::atomic<bool>>(false);
};

namespace {

// The pool's own mapping of a call region when it covers `ref`: a worker
// writes an answer there (kRegionResultInCall) only within what the pool
// has mapped. kDataLoss otherwise.
absl::StatusOr<std::shared_ptr<RegionMapping>> OwnMappingCovering(
    const PayloadRegion& region, RegionRef ref) {
  const std::shared_ptr<RegionMapping>& map = region.mapping();
  const uint64_t size = map == nullptr ? 0 : map->size();
  if (ref.offset > size || ref.length > size - ref.offset) {
    return absl::DataLossError(absl::StrCat(
        "a call region reference [", ref.offset, ", +", ref.length,
        ") is beyond the ", size, " bytes the pool mapped"));
  }
  return map;
}

constexpr uint64_t kWakeTag = ~uint64_t{0};
constexpr uint64_t kParkTimerTag = ~uint64_t{0} - 2;  // even: no stderr bit
constexpr size_t kMaxBatch = 4096;
constexpr int kSocketBufferBytes = 4 << 20;
constexpr uint64_t kTargetBatchNs = 1'000'000;   // 1 ms of work per batch
constexpr size_t kMaxBatchBytes = size_t{1} << 20;
constexpr int kTimerTickMs = 1;                  // deadline checks
constexpr size_t kMaxRestartReasons = 16;
constexpr int kMaxStartFailures = 5;
constexpr uint64_t kPipelineBelowNs = 1'000'000;  // see Dispatch()
// How long a socket parked by DispatchDirect waits for its waiter before
// the I/O thread takes it back (so a task nobody waits on, e.g. one read
// through a done-callback, is still answered).
constexpr absl::Duration kParkFor = absl::Milliseconds(1);
// How long a caller keeps reading its worker's socket itself before it
// hands it back and waits to be woken: the fast path is for short tasks;
// for longer ones an extra wake-up does not matter, and the 1 ms polls
// would.
constexpr absl::Duration kAssistFor = absl::Milliseconds(20);
constexpr absl::Duration kAssistPoll = absl::Milliseconds(1);

// True on an I/O thread, and on a caller thread while it holds some pool's
// io_mu_ (done-callbacks may run then): such a thread never takes the fast
// path, so it never takes an io_mu_ it may already hold.
thread_local bool t_io_locked = false;
class IoLockedScope {
 public:
  IoLockedScope() : was_(t_io_locked) { t_io_locked = true; }
  ~IoLockedScope() { t_io_locked = was_; }
  IoLockedScope(const IoLockedScope&) = delete;
  IoLockedScope& operator=(const IoLockedScope&) = delete;

 private:
  const bool was_;
};

// Bytes a frame adds around a task's arguments (header, vector size, id,
// task index, string length), with room to spare.
constexpr size_t kFrameOverhead = 64;

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

uint64_t MonotonicNowNs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

std::string HexEncode(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

void AddInto(WorkerStats& into, const WorkerStatusPage& page, absl::Duration alive) {
  into.tasks_done += page.tasks_done.load(std::memory_order_relaxed);
  absl::Duration busy =
      absl::Nanoseconds(page.busy_ns.load(std::memory_order_relaxed));
  into.busy += busy;
  into.idle += std::max(absl::ZeroDuration(), alive - busy);
  into.serialize +=
      absl::Nanoseconds(page.codec_ns.load(std::memory_order_relaxed));
  into.peak_rss_bytes = std::max<uint64_t>(
      into.peak_rss_bytes, page.peak_rss_bytes.load(std::memory_order_relaxed));
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
  PoolCore* c = core.get();
  c->cancel_channel_ = std::make_shared<CancelChannel>(
      [c](uint64_t id) {
        {
          absl::MutexLock l(&c->mu_);
          c->cancel_requests_.push_back(id);
        }
        c->Wake();
      },
      [c](const TaskState& t, absl::Time deadline) { c->AssistWait(t, deadline); },
      [c] {
        // A parked socket is read by a waiter or, within kParkFor, the I/O
        // thread; a task watched by a callback should not wait that long.
        if (c->parked_.load(std::memory_order_acquire)) c->Wake();
      });
  c->epoll_fd_.Reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!c->epoll_fd_) return ErrnoToStatus("epoll_create1", errno);
  c->wake_fd_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!c->wake_fd_) return ErrnoToStatus("eventfd", errno);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeTag;
  if (::epoll_ctl(c->epoll_fd_.get(), EPOLL_CTL_ADD, c->wake_fd_.get(), &ev) !=
      0) {
    return ErrnoToStatus("epoll_ctl(eventfd)", errno);
  }
  c->park_timer_.Reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!c->park_timer_) return ErrnoToStatus("timerfd_create", errno);
  ev.data.u64 = kParkTimerTag;
  if (::epoll_ctl(c->epoll_fd_.get(), EPOLL_CTL_ADD, c->park_timer_.get(), &ev) !=
      0) {
    return ErrnoToStatus("epoll_ctl(timerfd)", errno);
  }

  c->io_thread_ = std::thread([c] { c->IoLoop(); });

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
  assist_off_.store(true);
  if (cancel_channel_) cancel_channel_->Detach();
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
    return absl::NotFoundError(absl::StrCat(
        "unknown task '", name, "': the plugins (",
        absl::StrJoin(options_.plugins, ", "), ") register ",
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
  if (DispatchDirect(task)) return;
  std::vector<std::shared_ptr<TaskState>> one;
  one.push_back(std::move(task));
  EnqueueMany(one);
}

void PoolCore::EnqueueMany(std::vector<std::shared_ptr<TaskState>>& tasks) {
  absl::Status refused;
  for (auto& t : tasks) t->set_callback_errors(callback_errors_);
  // Arguments that cannot fit in one frame would make the worker drop the
  // connection: refuse them here, with the reason, before they are queued.
  std::erase_if(tasks, [this](const std::shared_ptr<TaskState>& t) {
    if (t->args().size() + kFrameOverhead <= options_.max_frame_bytes) return false;
    t->Cancel(absl::ResourceExhaustedError(absl::StrCat(
        DescribeTask(*t), ": its arguments are ", t->args().size(),
        " bytes, over the frame limit of ", options_.max_frame_bytes,
        " bytes (PoolOptions::max_frame_bytes)")));
    return true;
  });
  for (auto& t : tasks) t->set_cancel_channel(cancel_channel_);
  {
    absl::MutexLock l(&mu_);
    if (accepting_) {
      for (auto& t : tasks) {
        t->set_id(next_id_++);
        ChunkState* chunk = t->AsChunk();
        submitted_ += chunk != nullptr ? chunk->size() : 1;
        pending_.push_back(std::move(t));
        queued_hint_.store(true, std::memory_order_relaxed);
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

size_t PoolCore::SuggestedChunkSize() const {
  return BatchSize(avg_task_ns_.load(std::memory_order_relaxed));
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

namespace {

// The error of a task whose worker died under it: once, or as a poison
// task after `crashes` deaths.
std::string CrashMessage(const std::string& what,
                         const std::vector<std::string>& crashes,
                         const std::string& how, const std::string& tail) {
  if (crashes.size() <= 1) {
    return absl::StrCat(what, " failed: ", how, " while running it", tail);
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

void PoolCore::RequeueFront(std::vector<std::shared_ptr<TaskState>>& tasks) {
  for (auto it = tasks.rbegin(); it != tasks.rend(); ++it) {
    (*it)->Requeue();
    pending_.push_front(std::move(*it));
    queued_hint_.store(true, std::memory_order_relaxed);
  }
  tasks.clear();
}

std::string PoolCore::DescribeTask(const TaskState& t) const {
  return DescribeTaskInput(tasks_[t.task() & ~kChunkBit].name, t.index());
}

std::vector<int> PoolCore::WorkerPids() const {
  absl::MutexLock l(&mu_);
  std::vector<int> out;
  for (const SlotRecord& s : slots_) {
    if (s.pid > 0) out.push_back(s.pid);
  }
  return out;
}

PoolStats PoolCore::Stats() const {
  PoolStats out;
  absl::Time now = absl::Now();
  absl::MutexLock l(&mu_);
  for (size_t i = 0; i < slots_.size(); ++i) {
    const SlotRecord& s = slots_[i];
    WorkerStats w = s.past;
    w.slot = static_cast<int>(i);
    w.pid = s.pid;
    if (s.page != nullptr && s.pid > 0) {
      const auto& page = *static_cast<const WorkerStatusPage*>(s.page->data());
      AddInto(w, page, now - s.started);
      w.rss_bytes = page.rss_bytes.load(std::memory_order_relaxed);
    }
    out.workers.push_back(std::move(w));
  }
  out.submitted = submitted_;
  out.succeeded = succeeded_.load(std::memory_order_relaxed);
  out.failed = failed_.load(std::memory_order_relaxed);
  out.pending = pending_.size();
  out.in_flight = in_flight_;
  out.shared_memory_args = shm_args_.load(std::memory_order_relaxed);
  out.shared_memory_results = shm_results_.load(std::memory_order_relaxed);
  out.direct_calls = direct_calls_.load(std::memory_order_relaxed);
  out.caller_reads = caller_reads_.load(std::memory_order_relaxed);
  out.callback_errors = callback_errors_->load(std::memory_order_relaxed);
  return out;
}

void PoolCore::Finish(TaskState& t, absl::Status status, ResultBytes payload) {
  // Only a holder of io_mu_ finishes tasks that were dispatched, so nothing
  // can complete `t` between this check and Complete(); counting first means a
  // caller woken by the completion sees the counters already updated.
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

void PoolCore::SpawnWorker(size_t slot) {
  static std::atomic<uint32_t> generation{0};
  auto fail = [&](absl::Status s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_) {
    {
      absl::MutexLock l(&mu_);
      if (slot >= slots_.size()) slots_.resize(slot + 1);
      auto& reasons = slots_[slot].past.restart_reasons;
      reasons.push_back(absl::StrCat("could not start a worker: ", s.message()));
      if (reasons.size() > kMaxRestartReasons) reasons.erase(reasons.begin());
    }
    StartFailed(s);
  };

  auto pair = MakeSocketPair();
  if (!pair.ok()) return fail(pair.status());
  // Large payloads cross in fewer, bigger steps (each a wake-up of the
  // other side): ask for 4 MiB send buffers (the kernel caps this at
  // net.core.wmem_max; failing is harmless).
  for (int fd : {pair->first.get(), pair->second.get()}) {
    int bytes = kSocketBufferBytes;
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
  }
  // Keep the child's descriptors off the numbers it will see them under.
  auto child_sock = DupCloseOnExec(pair->second.get(), 10);
  if (!child_sock.ok()) return fail(child_sock.status());
  pair->second.Reset();
  auto status = SharedMemory::Create(kWorkerStatusPageSize);
  if (!status.ok()) return fail(status.status());
  auto status_fd = DupCloseOnExec(status->fd(), 10);
  if (!status_fd.ok()) return fail(status_fd.status());
  int err_fds[2];
  if (::pipe2(err_fds, O_CLOEXEC) != 0) return fail(ErrnoToStatus("pipe2", errno));
  UniqueFd err_read(err_fds[0]);
  UniqueFd err_write_low(err_fds[1]);
  auto err_write = DupCloseOnExec(err_write_low.get(), 10);
  if (!err_write.ok()) return fail(err_write.status());
  err_write_low.Reset();

  std::vector<std::string> argv = {
      options_.worker_path, "--fd=3", "--status-fd=4",
      absl::StrCat("--parent=", ::getpid()),
      absl::StrCat("--max-frame=", options_.max_frame_bytes)};
  std::vector<ChildProcess::FdMapping> fds = {
      {child_sock->get(), 3}, {status_fd->get(), 4}, {err_write->get(), 2}};
  // Large payloads' shared memory: the call region (fd 5) and the result
  // region (fd 6).
  PayloadRegion call_region{UniqueFd()}, result_region{UniqueFd()};
  UniqueFd call_region_fd, result_region_fd;
  if (options_.shared_memory_min_bytes > 0) {
    auto calls = PayloadRegion::Create("procpool-calls");
    if (!calls.ok()) return fail(calls.status());
    auto results = PayloadRegion::Create("procpool-results");
    if (!results.ok()) return fail(results.status());
    auto calls_fd = DupCloseOnExec(calls->fd(), 10);
    if (!calls_fd.ok()) return fail(calls_fd.status());
    auto results_fd = DupCloseOnExec(results->fd(), 10);
    if (!results_fd.ok()) return fail(results_fd.status());
    call_region = *std::move(calls);
    result_region = *std::move(results);
    call_region_fd = *std::move(calls_fd);
    result_region_fd = *std::move(results_fd);
    fds.push_back({call_region_fd.get(), 5});
    fds.push_back({result_region_fd.get(), 6});
    argv.push_back("--call-region-fd=5");
    argv.push_back("--result-region-fd=6");
    argv.push_back(absl::StrCat("--shm-min=", options_.shared_memory_min_bytes));
  }
  if (options_.max_tasks_per_child > 0) {
    argv.push_back(absl::StrCat("--max-tasks=", options_.max_tasks_per_child));
  }
  if (options_.max_worker_rss_bytes > 0) {
    argv.push_back(absl::StrCat("--max-rss=", options_.max_worker_rss_bytes));
  }
  if (!options_.initializer.task.empty()) {
    argv.push_back(absl::StrCat("--init-task=", options_.initializer.task));
    argv.push_back(
        absl::StrCat("--init-fingerprint=", options_.initializer.fingerprint));
    argv.push_back(
        absl::StrCat("--init-args=", HexEncode(options_.initializer.args)));
  }
  argv.insert(argv.end(), options_.plugins.begin(), options_.plugins.end());
  auto proc = ChildProcess::Spawn(options_.worker_path, argv, fds,
                                  /*new_process_group=*/true);
  if (!proc.ok()) return fail(proc.status());

  UniqueFd sock = std::move(pair->first);
  err_write->Reset();  // the child has its copy
  if (absl::Status s = SetNonBlocking(sock.get(), true); !s.ok()) {
    return fail(s);
  }
  if (absl::Status s = SetNonBlocking(err_read.get(), true); !s.ok()) {
    return fail(s);
  }
  auto page = std::make_shared<SharedMemory>(*std::move(status));
  auto w = std::make_unique<WorkerConnection>(
      slot, generation.fetch_add(1) + 1, *std::move(proc), std::move(sock),
      page, options_.max_frame_bytes);
  w->err = std::move(err_read);
  w->call_region = std::move(call_region);
  w->result_region = std::move(result_region);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.u64 = w->epoll_tag();
  if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, w->sock.get(), &ev) != 0) {
    return fail(ErrnoToStatus("epoll_ctl(worker)", errno));
  }
  ev.events = EPOLLIN;
  ev.data.u64 = w->epoll_tag() | 1;
  if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, w->err.get(), &ev) != 0) {
    return fail(ErrnoToStatus("epoll_ctl(worker stderr)", errno));
  }
  {
    absl::MutexLock l(&mu_);
    if (slot >= slots_.size()) slots_.resize(slot + 1);
    slots_[slot].pid = w->proc.pid();
    slots_[slot].page = std::move(page);
    slots_[slot].started = absl::Now();
  }
  if (slot >= workers_.size()) workers_.resize(slot + 1);
  workers_[slot] = std::move(w);
}

void PoolCore::StartFailed(const absl::Status& s) {
  ++consecutive_start_failures_;
  respawn_not_before_ =
      absl::Now() + std::min(absl::Seconds(1),
                             absl::Milliseconds(10) * (1 << std::min(
                                 consecutive_start_failures_, 7)));
  bool started;
  {
    absl::MutexLock l(&mu_);
    started = hellos_ >= static_cast<size_t>(options_.max_workers);
    if (!started && start_error_.ok()) start_error_ = s;
  }
  if (started && consecutive_start_failures_ >= kMaxStartFailures) {
    BreakPool(absl::UnavailableError(absl::StrCat(
        "the pool is broken: ", consecutive_start_failures_,
        " replacement workers in a row failed to start; the last: ",
        s.message())));
  }
}

void PoolCore::IoLoop() {
  t_io_locked = true;  // for the thread's whole life
  io_mu_.Lock();
  const size_t n = static_cast<size_t>(options_.max_workers);
  workers_.resize(n);
  for (size_t i = 0; i < n; ++i) SpawnWorker(i);

  epoll_event events[64];
  Stop stop = Stop::kNo;
  int timeout_ms = -1;
  while (true) {
    io_mu_.Unlock();
    int ready = ::epoll_wait(epoll_fd_.get(), events, 64, timeout_ms);
    const int wait_errno = errno;
    io_mu_.Lock();
    if (ready < 0 && wait_errno != EINTR) {
      BreakPool(ErrnoToStatus("epoll_wait", wait_errno));
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
      if (tag == kParkTimerTag) {
        uint64_t v;
        ssize_t r = ::read(park_timer_.get(), &v, sizeof(v));
        (void)r;
        park_timer_armed_ = false;
        continue;
      }
      size_t slot = static_cast<size_t>(tag >> 32);
      if (slot >= workers_.size() || workers_[slot] == nullptr) continue;
      WorkerConnection& w = *workers_[slot];
      if (w.epoll_tag() != (tag & ~uint64_t{1}) || w.dead) continue;
      if (tag & 1) {
        ReadStderr(w);
        continue;
      }
      if (w.caller_owned) continue;  // an event from before a caller took it
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
        OnReadable(w);
      }
      if (!w.dead && (events[i].events & EPOLLOUT)) OnWritable(w);
    }
    wake_pending_.store(false);
    UnparkLocked();
    HandleCancelRequests();

    bool started, broken;
    {
      absl::MutexLock l(&mu_);
      stop = stop_;
      started = hellos_ >= n;
      broken = broken_;
      if (stop == Stop::kForce ||
          (stop == Stop::kGraceful && pending_.empty() && in_flight_ == 0)) {
        break;
      }
    }
    // Replace workers that died (during startup a death is an error
    // instead). After failures to start one, wait a little longer each time.
    int respawn_ms = -1;
    if (started && !broken && stop == Stop::kNo) {
      absl::Time now = absl::Now();
      for (size_t i = 0; i < workers_.size(); ++i) {
        if (workers_[i] != nullptr && !workers_[i]->dead) continue;
        if (now < respawn_not_before_) {
          respawn_ms = static_cast<int>(
              absl::ToInt64Milliseconds(respawn_not_before_ - now) + 1);
          break;
        }
        workers_[i].reset();
        SpawnWorker(i);
        if (workers_[i] == nullptr) respawn_ms = 1;  // retry after the backoff
      }
    }
    Dispatch();
    // After Dispatch, so tasks just sent with a timeout are watched.
    timeout_ms = CheckTimers();
    // A worker can also be lost in Dispatch (a send that fails because it
    // just died) or in CheckTimers (stopped at a deadline). Its descriptors
    // are out of epoll by now, so nothing would wake this loop to replace
    // it: with every worker lost that way, the pool stalled with work
    // queued (found by chaos_test). Go round again at once instead.
    if (respawn_ms < 0 && started && !broken && stop == Stop::kNo) {
      for (const auto& w : workers_) {
        if (w == nullptr || w->dead) {
          respawn_ms = 0;
          break;
        }
      }
    }
    if (respawn_ms >= 0 && (timeout_ms < 0 || respawn_ms < timeout_ms)) {
      timeout_ms = respawn_ms;
    }
  }
  StopWorkers(/*graceful=*/stop == Stop::kGraceful);
  io_mu_.Unlock();
  absl::MutexLock l(&mu_);
  io_done_ = true;
}

int PoolCore::CheckTimers() {
  bool need_tick = false;
  absl::Time now = absl::Now();
  uint64_t now_ns = MonotonicNowNs();
  for (auto& wp : workers_) {
    if (wp == nullptr || wp->dead) continue;
    WorkerConnection& w = *wp;
    if (w.stopping) {
      if (now >= w.kill_at) w.proc.Kill(SIGKILL);
      need_tick = true;
      continue;
    }
    if (w.timed_inflight == 0) continue;
    need_tick = true;
    const WorkerStatusPage& page = w.page();
    uint64_t running = page.running_task.load(std::memory_order_acquire);
    if (running == 0) continue;
    uint64_t since = page.running_since_ns.load(std::memory_order_relaxed);
    for (auto& t : w.inflight) {
      if (t->id() != running) continue;
      absl::Duration timeout = t->policy().timeout;
      if (timeout != absl::InfiniteDuration() && now_ns > since &&
          absl::Nanoseconds(now_ns - since) >= timeout) {
        Finish(*t, absl::DeadlineExceededError(absl::StrCat(
                       DescribeTask(*t), " exceeded its timeout of ",
                       absl::FormatDuration(timeout), "; worker pid ",
                       w.proc.pid(), " was stopped")));
        StopWorker(w);
      }
      break;
    }
  }
  return need_tick ? kTimerTickMs : -1;
}

void PoolCore::HandleCancelRequests() {
  std::vector<uint64_t> ids;
  {
    absl::MutexLock l(&mu_);
    ids.swap(cancel_requests_);
  }
  for (uint64_t id : ids) {
    for (auto& wp : workers_) {
      if (wp == nullptr || wp->dead) continue;
      WorkerConnection& w = *wp;
      auto it = std::find_if(w.inflight.begin(), w.inflight.end(),
                             [id](const auto& t) { return t->id() == id; });
      if (it == w.inflight.end()) continue;
      TaskState& t = **it;
      bool running =
          w.page().running_task.load(std::memory_order_acquire) == id;
      if (running && !w.stopping) {
        Finish(t, absl::CancelledError(absl::StrCat(
                      DescribeTask(t), " was cancelled while running; worker pid ",
                      w.proc.pid(), " was stopped")));
        StopWorker(w);
      } else {
        // Not started yet: resolve now; the worker's answer will be ignored.
        Finish(t, absl::CancelledError(
                      absl::StrCat(DescribeTask(t), " was cancelled before it ran")));
      }
      break;
    }
  }
}

void PoolCore::StopWorker(WorkerConnection& w) {
  if (w.stopping || w.dead) return;
  w.stopping = true;
  w.kill_at = absl::Now() + options_.kill_grace;
  w.proc.Kill(SIGTERM);
}

void PoolCore::ReadStderr(WorkerConnection& w) {
  if (!w.err) return;
  char buf[16 * 1024];
  while (true) {
    ssize_t n = ::read(w.err.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
        // EOF: the worker (and anything it forked) closed its stderr.
        ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, w.err.get(), nullptr);
        w.err.Reset();
        if (!w.err_partial.empty()) TakeStderrLine(w, std::move(w.err_partial));
        w.err_partial.clear();
      }
      return;
    }
    absl::string_view chunk(buf, static_cast<size_t>(n));
    while (!chunk.empty()) {
      size_t nl = chunk.find('\n');
      if (nl == absl::string_view::npos) {
        w.err_partial.append(chunk.data(), chunk.size());
        // A runaway line without newlines is cut, not buffered forever.
        if (w.err_partial.size() > 4096) {
          TakeStderrLine(w, std::move(w.err_partial));
          w.err_partial.clear();
        }
        break;
      }
      w.err_partial.append(chunk.data(), nl);
      TakeStderrLine(w, std::move(w.err_partial));
      w.err_partial.clear();
      chunk.remove_prefix(nl + 1);
    }
  }
}

void PoolCore::TakeStderrLine(WorkerConnection& w, std::string line) {
  if (options_.forward_worker_stderr) {
    std::string out = absl::StrCat("[procpool worker ", w.slot, " pid ",
                                   w.proc.pid(), "] ", line, "\n");
    ssize_t r = ::write(STDERR_FILENO, out.data(), out.size());
    (void)r;
  }
  if (options_.stderr_tail_lines <= 0) return;
  if (line.size() > 512) line = absl::StrCat(line.substr(0, 509), "...");
  w.err_tail.push_back(std::move(line));
  while (w.err_tail.size() > static_cast<size_t>(options_.stderr_tail_lines)) {
    w.err_tail.pop_front();
  }
}

void PoolCore::OnReadable(WorkerConnection& w, bool read_stderr) {
  // What a task wrote to stderr is forwarded before its future resolves.
  if (read_stderr) ReadStderr(w);
  bool drained = false;
  while (!w.dead && !drained) {
    char* space = w.decoder.WritableSpace(64 * 1024);
    const size_t room = w.decoder.writable();
    ssize_t n = ::read(w.sock.get(), space, room);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      // ECONNRESET: the worker exited with calls unread; its exit status
      // tells the story, as for a plain EOF.
      HandleWorkerLoss(w, errno == ECONNRESET
                              ? absl::OkStatus()
                              : ErrnoToStatus("read from worker", errno));
      return;
    }
    if (n == 0) {
      HandleWorkerLoss(w, absl::OkStatus());
      return;
    }
    w.decoder.Commit(static_cast<size_t>(n));
    // A short read emptied the socket: no need for a read that says EAGAIN
    // (more data later is a new readiness event).
    drained = static_cast<size_t>(n) < room;
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
  absl::StatusOr<HelloMsg> hello = DecodeHello(payload);
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
      DecodeResults(payload);
  if (!results.ok()) return HandleWorkerLoss(w, results.status());
  // Match answers to tasks first, so the in-flight count is right before
  // any caller is woken.
  std::vector<std::shared_ptr<TaskState>> answered;
  answered.reserve(results->size());
  absl::Status protocol_error;
  for (ResultMsg& r : *results) {
    if (w.inflight.empty() || w.inflight.front()->id() != r.id) {
      protocol_error = absl::DataLossError(
          absl::StrCat("protocol error from worker: it answered task id ", r.id,
                       " out of order"));
      break;
    }
    answered.push_back(std::move(w.inflight.front()));
    w.inflight.pop_front();
    if (r.id == w.call_region_task) w.call_region_task = 0;
    if (answered.back()->policy().timeout != absl::InfiniteDuration()) {
      --w.timed_inflight;
    }
  }
  if (!answered.empty()) {
    absl::MutexLock l(&mu_);
    in_flight_ -= answered.size();
  }
  uint64_t total_ns = 0;
  size_t items = 0;  // calls and chunk items answered
  std::vector<std::shared_ptr<TaskState>> requeue;
  for (size_t i = 0; i < answered.size(); ++i) {
    ResultMsg& r = (*results)[i];
    TaskState* t = answered[i].get();
    total_ns += r.run_ns;
    ChunkState* chunk = t->AsChunk();
    const uint8_t code = r.code & ~(kRegionResult | kRegionResultInCall);
    ResultBytes bytes;
    if (r.code & (kRegionResult | kRegionResultInCall)) {
      // Only a single call's result is decoded later, by its caller; the
      // rest is read now, and the region freed at once.
      absl::StatusOr<ResultBytes> b = RegionResult(
          w, r.payload, /*in_call_region=*/(r.code & kRegionResultInCall) != 0,
          /*borrow=*/chunk == nullptr && code == static_cast<uint8_t>(ResultCode::kOk));
      if (!b.ok()) {
        Finish(*t, absl::DataLossError(absl::StrCat(DescribeTask(*t), ": ",
                                                    b.status().message())));
        if (protocol_error.ok()) protocol_error = b.status();
        continue;
      }
      bytes = *std::move(b);
    } else {
      bytes = ResultBytes(std::move(r.payload));
    }
    if (chunk != nullptr && code == static_cast<uint8_t>(ResultCode::kOk)) {
      if (t->Done()) continue;  // cancelled meanwhile
      size_t n = 0;
      absl::StatusOr<bool> all = chunk->Accept(std::move(bytes).TakeOwned(), &n);
      if (!all.ok()) {
        // The worker wrote garbage: it is replaced, the chunk fails.
        Finish(*t, absl::DataLossError(absl::StrCat(
                       DescribeTask(*t), ": worker answered a malformed chunk: ",
                       all.status().message())));
        if (protocol_error.ok()) protocol_error = all.status();
        continue;
      }
      items += n;
      if (*all) {
        Finish(*t, absl::OkStatus());
      } else {
        requeue.push_back(std::move(answered[i]));  // the rest, once more
      }
      continue;
    }
    ++items;
    if (code == static_cast<uint8_t>(ResultCode::kOk)) {
      Finish(*t, absl::OkStatus(), std::move(bytes));
    } else {
      Finish(*t, AnswerStatus(code, bytes.view(), DescribeTask(*t)));
    }
  }
  if (!requeue.empty()) {
    absl::MutexLock l(&mu_);
    RequeueFront(requeue);
  }
  if (items > 0) {
    uint64_t batch_avg = std::max<uint64_t>(1, total_ns / items);
    uint64_t avg = avg_task_ns_.load(std::memory_order_relaxed);
    avg_task_ns_.store(avg == 0 ? batch_avg : (avg * 7 + batch_avg) / 8,
                       std::memory_order_relaxed);
  }
  if (!protocol_error.ok()) HandleWorkerLoss(w, protocol_error);
}

void PoolCore::HandleWorkerLoss(WorkerConnection& w, absl::Status reason) {
  if (w.dead) return;
  w.dead = true;
  ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, w.sock.get(), nullptr);
  w.sock.Reset();
  // EOF means the process is exiting (or retiring): give it a moment to end
  // on its own so its real exit status is reported. Otherwise (garbage on
  // the wire) it is stopped at once. SIGKILL cannot change how a process
  // that already died ended.
  if (!reason.ok() || !w.proc.WaitFor(absl::Milliseconds(200))) {
    w.proc.Kill(SIGKILL);
  }
  ExitStatus exit = w.proc.Wait();
  // Everything the worker wrote is in the pipe now; take it before reporting.
  ReadStderr(w);
  if (w.err) {
    ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, w.err.get(), nullptr);
    w.err.Reset();
  }
  std::string tail;
  if (!w.err_tail.empty()) {
    tail = "; its last stderr lines:";
    for (const std::string& l : w.err_tail) absl::StrAppend(&tail, "\n  | ", l);
  }
  const WorkerStatusPage& page = w.page();
  const uint64_t running = page.running_task.load(std::memory_order_acquire);
  const auto retired =
      static_cast<RetireReason>(page.retire_reason.load(std::memory_order_acquire));
  const pid_t pid = w.proc.pid();

  std::string how =
      reason.ok()
          ? absl::StrCat("worker pid ", pid, " ", exit.ToString())
          : absl::StrCat("worker pid ", pid, " was stopped (", reason.message(),
                         ")");
  if (retired == RetireReason::kMaxTasks && exit.exited() && exit.exit_code() == 0) {
    how = absl::StrCat("worker pid ", pid, " retired after ",
                       page.tasks_done.load(), " tasks (max_tasks_per_child)");
  } else if (retired == RetireReason::kMaxMemory && exit.exited() &&
             exit.exit_code() == 0) {
    how = absl::StrCat("worker pid ", pid, " retired: resident memory ",
                       page.rss_bytes.load() >> 20, " MiB over the limit of ",
                       options_.max_worker_rss_bytes >> 20, " MiB");
  } else if (w.stopping) {
    how = absl::StrCat("worker pid ", pid, " stopped by the pool (", exit.ToString(), ")");
  }

  {
    absl::MutexLock l(&mu_);
    SlotRecord& s = slots_[w.slot];
    AddInto(s.past, page, absl::Now() - s.started);
    s.pid = 0;
    s.page = nullptr;
    if (w.ready) {
      ++s.past.restarts;
      s.past.restart_reasons.push_back(how);
      if (s.past.restart_reasons.size() > kMaxRestartReasons) {
        s.past.restart_reasons.erase(s.past.restart_reasons.begin());
      }
    }
  }

  if (!w.ready) {
    // Died before saying hello: a startup failure, not a task failure.
    absl::Status s = w.hello_error.ok()
                         ? absl::InternalError(absl::StrCat(
                               how, " before it was ready (", options_.worker_path,
                               ")", tail))
                         : w.hello_error;
    // A worker killed from outside before it was ready (SIGKILL, SIGTERM)
    // says nothing about whether workers can start; anything else does.
    if (exit.signaled() && (exit.signal() == SIGKILL || exit.signal() == SIGTERM) &&
        w.hello_error.ok()) {
      absl::MutexLock l(&mu_);
      if (hellos_ < static_cast<size_t>(options_.max_workers) && start_error_.ok()) {
        start_error_ = s;
      }
    } else {
      StartFailed(s);
    }
    return;
  }

  std::deque<std::shared_ptr<TaskState>> inflight = std::move(w.inflight);
  w.inflight.clear();
  w.timed_inflight = 0;
  std::shared_ptr<TaskState> victim;
  std::vector<std::shared_ptr<TaskState>> requeue;
  // A worker that broke the protocol is blamed on the task it was running,
  // or else the oldest one it had not answered.
  const bool protocol_error = !reason.ok() && !w.stopping;
  for (auto& t : inflight) {
    if (t->Done()) continue;  // cancelled or timed out already
    bool blamed = running != 0 ? t->id() == running : protocol_error && !victim;
    if (blamed) {
      victim = std::move(t);
    } else {
      requeue.push_back(std::move(t));
    }
  }
  const bool break_pool =
      options_.on_worker_death == WorkerDeathPolicy::kBreakPool && !w.stopping &&
      retired == RetireReason::kNone;
  if (victim) {
    victim->crashes().push_back(how);
    if (!break_pool && !protocol_error &&
        static_cast<int>(victim->crashes().size()) <= victim->policy().retries) {
      requeue.insert(requeue.begin(), std::move(victim));  // run it again
    } else if (ChunkState* chunk = victim->AsChunk()) {
      // Only the item that was running fails; the rest of its chunk (those
      // before it lost their answers with the worker) is sent again.
      const size_t k = page.running_item.load(std::memory_order_relaxed);
      const size_t index = chunk->UnansweredIndex(
          std::min<size_t>(k, std::max<size_t>(chunk->unanswered(), 1) - 1));
      const std::string what = chunk->DescribeItem(index);
      absl::Status why(protocol_error ? reason.code() : absl::StatusCode::kAborted,
                       CrashMessage(what, victim->crashes(), how, tail));
      victim->crashes().clear();
      if (chunk->FailRunning(k, std::move(why))) {
        Finish(*victim, absl::OkStatus());
      } else if (!break_pool) {
        requeue.insert(requeue.begin(), std::move(victim));
      } else {
        Finish(*victim, absl::OkStatus());  // BreakPool below fails the rest
      }
      victim = nullptr;
    }
  }
  {
    absl::MutexLock l(&mu_);
    in_flight_ -= inflight.size();
    RequeueFront(requeue);
  }
  if (victim) {
    Finish(*victim, absl::Status(protocol_error ? reason.code()
                                                : absl::StatusCode::kAborted,
                                 CrashMessage(DescribeTask(*victim),
                                              victim->crashes(), how, tail)));
  }
  if (break_pool) {
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
  // It closes every socket. Only after broken_ is set: waiting releases
  // io_mu_, and the I/O thread must not replace (free) a dead worker that
  // a caller running this (from HandleWorkerLoss) still refers to.
  AwaitNoPollersLocked();
  for (auto& t : pending) {
    if (t->TryDispatch()) Finish(*t, why);
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
      slots_[w->slot].pid = 0;
    }
    for (auto& t : w->inflight) Finish(*t, why);
    failed += w->inflight.size();
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
    if (w != nullptr && w->ready && !w->dead && !w->stopping &&
        !w->caller_owned) {
      ready.push_back(w.get());
    }
  }
  if (ready.empty()) return;
  const uint64_t avg = avg_task_ns_.load(std::memory_order_relaxed);
  const size_t auto_batch = BatchSize(avg);
  // Short tasks keep a second batch queued in each worker so it never waits
  // for us. Tasks of unknown or long duration go one batch at a time, so a
  // quick task is never queued behind a long one while a worker is idle.
  const bool pipeline = avg != 0 && avg < kPipelineBelowNs;
  const uint64_t quota = options_.max_tasks_per_child;
  const size_t frame_budget =
      std::max<size_t>(1, std::min(kMaxBatchBytes, options_.max_frame_bytes / 2));
  // A worker whose current task has run far longer than tasks usually do
  // is probably on a long one: prefer the others.
  const uint64_t now_ns = MonotonicNowNs();
  const uint64_t long_ns = std::max<uint64_t>(2 * avg, kPipelineBelowNs);
  auto on_long_task = [&](const WorkerConnection& w) {
    const WorkerStatusPage& page = w.page();
    if (page.running_task.load(std::memory_order_relaxed) == 0) return false;
    uint64_t since = page.running_since_ns.load(std::memory_order_relaxed);
    return now_ns > since && now_ns - since > long_ns;
  };
  {
    absl::MutexLock l(&mu_);
    while (!pending_.empty()) {
      const size_t batch = auto_batch;
      const size_t window = pipeline ? 2 * batch : batch;
      // The least loaded worker with room, round-robin among equals.
      WorkerConnection* best = nullptr;
      std::pair<size_t, bool> best_key;
      for (size_t k = 0; k < ready.size(); ++k) {
        WorkerConnection* w = ready[(rr_next_ + k) % ready.size()];
        if (w->inflight.size() >= window) continue;
        if (quota > 0 && w->dispatched >= quota) continue;  // about to retire
        const bool long_task = on_long_task(*w);
        // Never queue behind a task that has run far longer than tasks
        // usually do: it may run for seconds, or hang, while another
        // worker (or a replacement about to say hello) frees up. The task
        // stays queued; the next answer or hello dispatches it.
        if (long_task && !w->inflight.empty()) continue;
        std::pair<size_t, bool> key{w->inflight.size(), long_task};
        if (best == nullptr || key < best_key) {
          best = w;
          best_key = key;
        }
      }
      if (best == nullptr) break;
      WorkerConnection& w = *best;
      size_t take = std::min(batch, window - w.inflight.size());
      // Spread a short queue evenly instead of filling the first worker.
      take = std::min(take, (pending_.size() + ready.size() - 1) / ready.size());
      if (quota > 0) take = std::min<size_t>(take, quota - w.dispatched);
      size_t mark = w.out.size();
      CallsFrameBuilder frame(&w.out);
      size_t bytes = 0;
      while (take > 0 && !pending_.empty()) {
        const std::shared_ptr<TaskState>& next = pending_.front();
        // Keep frames under the limit; a task alone always fits (Enqueue
        // refused any that could not).
        if (bytes > 0 && bytes + next->args().size() > frame_budget) break;
        std::shared_ptr<TaskState> t = std::move(pending_.front());
        pending_.pop_front();
        if (!t->TryDispatch()) continue;  // cancelled while queued
        if (AddRegionCall(w, frame, *t)) {
          bytes += 32;
        } else {
          frame.Add(t->id(), t->task(), t->args());
          bytes += t->args().size() + 32;
        }
        if (t->policy().timeout != absl::InfiniteDuration()) ++w.timed_inflight;
        w.inflight.push_back(std::move(t));
        ++w.dispatched;
        --take;
        ++in_flight_;
      }
      if (frame.Finish() == 0) w.out.resize(mark);
    }
    ++rr_next_;
    queued_hint_.store(!pending_.empty(), std::memory_order_relaxed);
  }
  for (WorkerConnection* w : ready) {
    if (!w->out.empty() && !w->want_write) Flush(*w);
  }
}

bool PoolCore::AddRegionCall(WorkerConnection& w, CallsFrameBuilder& frame,
                             TaskState& t) {
  const std::string& args = t.args();
  const size_t min = options_.shared_memory_min_bytes;
  if (min == 0 || args.size() < min || w.call_region_task != 0 ||
      !w.call_region.valid() ||
      w.call_region_leased->load(std::memory_order_acquire)) {
    return false;
  }
  // On failure (no memory for the region) the socket still works.
  if (!w.call_region.Reserve(args.size()).ok()) return false;
  std::memcpy(w.call_region.data(), args.data(), args.size());
  std::string ref;
  AppendRegionRef(&ref, RegionRef{0, args.size()});
  frame.Add(t.id(), t.task() | kRegionBit, ref);
  w.call_region_task = t.id();
  shm_args_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

absl::StatusOr<ResultBytes> PoolCore::RegionResult(WorkerConnection& w,
                                                   std::string_view ref_bytes,
                                                   bool in_call_region, bool borrow) {
  std::function<void()> release;
  if (in_call_region) {
    w.call_region_leased->store(true, std::memory_order_relaxed);
    release = [leased = w.call_region_leased] {
      leased->store(false, std::memory_order_release);
    };
  } else {
    release = [page = w.status] {
      static_cast<WorkerStatusPage*>(page->data())
          ->result_region_busy.store(0, std::memory_order_release);
    };
  }
  absl::StatusOr<RegionRef> ref = ParseRegionRef(ref_bytes);
  absl::StatusOr<std::shared_ptr<RegionMapping>> map =
      !ref.ok()       ? ref.status()
      : in_call_region ? OwnMappingCovering(w.call_region, *ref)
                       : w.result_region.Covering(ref->offset, ref->length);
  if (!map.ok()) {
    release();
    return absl::DataLossError(absl::StrCat(
        "protocol error from worker: ", map.status().message()));
  }
  std::string_view bytes((*map)->data() + ref->offset, ref->length);
  shm_results_.fetch_add(1, std::memory_order_relaxed);
  if (!borrow) {
    std::string copy(bytes);
    release();
    return ResultBytes(std::move(copy));
  }
  // The lease keeps the mapping (and the status page) alive and frees the
  // region (for the worker's next large result, or the pool's next large
  // call) when the bytes are let go.
  const char* base = (*map)->data();
  std::shared_ptr<const void> lease(
      base, [map = *std::move(map), release](const void*) { release(); });
  return ResultBytes(bytes, std::move(lease));
}

void PoolCore::OnWritable(WorkerConnection& w) { Flush(w); }

void PoolCore::Flush(WorkerConnection& w) {
  while (w.out_off < w.out.size()) {
    // MSG_NOSIGNAL: a worker that died must not take this process down
    // with SIGPIPE; EPIPE is handled below like the worker's EOF.
    ssize_t n = ::send(w.sock.get(), w.out.data() + w.out_off,
                       w.out.size() - w.out_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      // The worker is gone; its exit status tells how.
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
  AwaitNoPollersLocked();  // it closes every socket
  // Closing our end is the request to exit: an idle worker reads EOF and
  // exits; a busy one is stopped.
  for (auto& w : workers_) {
    if (w == nullptr || w->dead) continue;
    ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, w->sock.get(), nullptr);
    w->sock.Reset();
    if (!w->inflight.empty()) w->proc.Kill(SIGTERM);
  }
  size_t cancelled = 0;
  for (auto& w : workers_) {
    if (w == nullptr || w->dead) continue;
    w->dead = true;
    absl::Duration wait = graceful && w->inflight.empty() ? absl::Seconds(2)
                                                          : options_.kill_grace;
    if (!w->proc.WaitFor(wait)) w->proc.TerminateOrKill(absl::Milliseconds(100));
    for (auto& t : w->inflight) {
      Finish(*t, absl::CancelledError(absl::StrCat(
                     DescribeTask(*t),
                     " was cancelled: the pool was destroyed while it ran")));
      ++cancelled;
    }
    w->inflight.clear();
  }
  std::deque<std::shared_ptr<TaskState>> pending;
  {
    absl::MutexLock l(&mu_);
    in_flight_ -= cancelled;
    pending.swap(pending_);
    for (SlotRecord& s : slots_) s.pid = 0;
  }
  for (auto& t : pending) {
    t->Cancel(absl::CancelledError("the pool was destroyed before the task ran"));
  }
}

// ---------------------------------------------------------------------------
// The serial fast path: a caller that submits a lone task, and then waits on
// it, does the worker's I/O on its own thread (docs/ARCHITECTURE.md,
// "Threading rules"). Everything here runs under io_mu_, with the same
// handlers the I/O thread uses; only the I/O thread spawns workers.

bool PoolCore::DispatchDirect(std::shared_ptr<TaskState>& task) {
  if (t_io_locked || queued_hint_.load(std::memory_order_relaxed) ||
      task->AsChunk() != nullptr ||
      task->args().size() + kFrameOverhead > options_.max_frame_bytes) {
    return false;
  }
  // Never wait for the I/O thread here: if it is busy, so is the pool.
  if (!io_mu_.TryLock()) return false;
  bool sent;
  {
    IoLockedScope scope;
    sent = DispatchDirectLocked(task);
  }
  io_mu_.Unlock();
  return sent;
}

bool PoolCore::DispatchDirectLocked(std::shared_ptr<TaskState>& task) {
  if (sockets_closing_) return false;
  const uint64_t quota = options_.max_tasks_per_child;
  WorkerConnection* w = nullptr;
  {
    absl::MutexLock l(&mu_);
    if (!accepting_ || stop_ != Stop::kNo || !pending_.empty()) return false;
    for (auto& wp : workers_) {
      if (wp != nullptr && wp->ready && !wp->dead && !wp->stopping &&
          !wp->assisting && wp->inflight.empty() && wp->out.empty() &&
          (quota == 0 || wp->dispatched < quota)) {
        w = wp.get();
        break;
      }
    }
    if (w == nullptr || !task->TryDispatch()) return false;
    task->set_cancel_channel(cancel_channel_);
    task->set_callback_errors(callback_errors_);
    task->set_id(next_id_++);
    ++submitted_;
    ++in_flight_;
  }
  const bool timed = task->policy().timeout != absl::InfiniteDuration();
  if (timed) ++w->timed_inflight;
  ++w->dispatched;
  CallsFrameBuilder frame(&w->out);
  if (!AddRegionCall(*w, frame, *task)) frame.Add(task->id(), task->task(), task->args());
  frame.Finish();
  w->inflight.push_back(std::move(task));
  // Park the socket before sending: an answer that comes before this
  // thread (or whoever waits) gets to AssistWait must not wake the I/O
  // thread, which is the hop this path exists to avoid.
  if (!timed && !w->caller_owned &&
      ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, w->sock.get(), nullptr) == 0) {
    w->caller_owned = true;
    ArmParkTimerLocked();
  }
  Flush(*w);
  if (w->caller_owned && !w->dead && !w->out.empty()) {
    ReturnToIoThreadLocked(*w);  // the rest needs EPOLLOUT
  }
  // The I/O thread is asleep and knows nothing of this task: wake it only
  // if it has something to do (watch a deadline, replace a dead worker and
  // re-send the task).
  if (timed || w->dead) Wake();
  direct_calls_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void PoolCore::AssistWait(const TaskState& t, absl::Time deadline) {
  // Only a lone Submit: a map's consumer waiting on its chunks would poll
  // sockets while the I/O thread keeps the other workers busy, and spend
  // the caller's CPU (0.47 instead of 0.09 us per 10 us item) for no gain.
  if (t_io_locked || (t.task() & kChunkBit) != 0 ||
      assist_off_.load(std::memory_order_relaxed) ||
      queued_hint_.load(std::memory_order_relaxed)) {
    return;
  }
  const absl::Time give_back_at = std::min(deadline, absl::Now() + kAssistFor);
  WorkerConnection* w = nullptr;
  int fd = -1, err_fd = -1;
  // Never wait for the I/O thread here: if it holds the lock it is running,
  // and it takes back a parked socket in this very iteration (UnparkLocked),
  // so a plain wait is served without delay. (A map's consumer waiting on
  // its chunks lands here too and must not contend with the I/O thread.)
  // If another caller holds it instead, the I/O thread is woken to take
  // back a parked socket now rather than when park_timer_ fires.
  if (!io_mu_.TryLock()) {
    if (parked_.load(std::memory_order_acquire)) Wake();
    return;
  }
  {
    IoLockedScope scope;
    w = ClaimForCallerLocked(t);
    if (w != nullptr) {
      fd = w->sock.get();
      err_fd = w->err ? w->err.get() : -1;  // the pipe is closed at its EOF
      ++pollers_;
    }
  }
  io_mu_.Unlock();
  if (w == nullptr) return;
  while (true) {
    // The socket stays open while this thread polls it: closing a claimed
    // socket waits for pollers_ == 0 (AwaitNoPollersLocked).
    const absl::Duration left =
        std::clamp(give_back_at - absl::Now(), absl::ZeroDuration(), kAssistPoll);
    const timespec ts = absl::ToTimespec(left);
    // The stderr pipe too, only to learn whether it has bytes: the worker
    // writes them before its answer, so if it shows none when the socket
    // is readable, there are none to forward first.
    // (The I/O thread may close the pipe at its EOF meanwhile; a poll on
    // a closed descriptor only wakes this loop early.)
    pollfd p[2] = {{fd, POLLIN | POLLRDHUP, 0}, {err_fd, POLLIN, 0}};
    int r = ::ppoll(p, 2, &ts, nullptr);
    absl::MutexLock l(&io_mu_);
    IoLockedScope scope;
    --pollers_;
    if (r != 0 && !w->dead) {  // r < 0 (EINTR): read anyway
      OnReadable(*w, /*read_stderr=*/r < 0 || p[1].revents != 0);
      if (t.Done()) caller_reads_.fetch_add(1, std::memory_order_relaxed);
    }
    bool keep = !w->dead && !w->stopping && !t.Done() && !sockets_closing_ &&
                absl::Now() < give_back_at &&
                !assist_off_.load(std::memory_order_relaxed);
    if (keep) {
      absl::MutexLock l2(&mu_);
      keep = pending_.empty() && stop_ == Stop::kNo && cancel_requests_.empty();
    }
    if (!keep) {
      if (CanStayParkedLocked(*w)) {
        // Serial use: the next task will most likely go to this idle
        // worker from this thread again, so leave its socket parked (the
        // I/O thread takes it back within kParkFor) instead of two
        // epoll_ctl calls per round trip.
        w->assisting = false;
        ArmParkTimerLocked();
      } else {
        ReturnToIoThreadLocked(*w);
      }
      return;
    }
    err_fd = w->err ? w->err.get() : -1;
    ++pollers_;
  }
}

WorkerConnection* PoolCore::ClaimForCallerLocked(const TaskState& t) {
  if (sockets_closing_) return nullptr;
  WorkerConnection* w = nullptr;
  for (auto& wp : workers_) {
    if (wp != nullptr && wp->inflight.size() == 1 &&
        wp->inflight.front().get() == &t) {
      w = wp.get();
      break;
    }
  }
  if (w == nullptr || w->dead || w->stopping || !w->ready || w->assisting ||
      !w->out.empty() || t.Done()) {
    return nullptr;
  }
  {
    absl::MutexLock l(&mu_);
    if (!pending_.empty() || stop_ != Stop::kNo || !cancel_requests_.empty()) {
      return nullptr;
    }
  }
  if (!w->caller_owned) {  // else parked by DispatchDirect: out already
    if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, w->sock.get(), nullptr) != 0) {
      return nullptr;
    }
    w->caller_owned = true;
  }
  w->assisting = true;
  return w;
}

void PoolCore::RearmLocked(WorkerConnection& w) {
  w.caller_owned = false;
  w.assisting = false;
  if (w.dead) return;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | (w.want_write ? EPOLLOUT : 0);
  ev.data.u64 = w.epoll_tag();
  if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, w.sock.get(), &ev) != 0) {
    HandleWorkerLoss(w, ErrnoToStatus("epoll_ctl(worker)", errno));
  }
}

void PoolCore::ReturnToIoThreadLocked(WorkerConnection& w) {
  RearmLocked(w);
  bool wake = w.dead || w.stopping;
  if (!wake) {
    absl::MutexLock l(&mu_);
    wake = !pending_.empty() || stop_ != Stop::kNo || !cancel_requests_.empty();
  }
  if (wake) Wake();
}

bool PoolCore::CanStayParkedLocked(const WorkerConnection& w) {
  if (w.dead || w.stopping || !w.inflight.empty() || !w.out.empty() ||
      sockets_closing_ || assist_off_.load(std::memory_order_relaxed)) {
    return false;
  }
  absl::MutexLock l(&mu_);
  return pending_.empty() && stop_ == Stop::kNo && cancel_requests_.empty();
}

void PoolCore::ArmParkTimerLocked() {
  parked_.store(true, std::memory_order_release);
  if (park_timer_armed_) return;
  itimerspec spec{};
  spec.it_value = absl::ToTimespec(kParkFor);
  if (::timerfd_settime(park_timer_.get(), 0, &spec, nullptr) == 0) {
    park_timer_armed_ = true;
  }
}

void PoolCore::UnparkLocked() {
  if (!parked_.load(std::memory_order_relaxed)) return;
  parked_.store(false, std::memory_order_relaxed);
  for (auto& wp : workers_) {
    if (wp != nullptr && wp->caller_owned && !wp->assisting) RearmLocked(*wp);
  }
}

void PoolCore::AwaitNoPollersLocked() {
  sockets_closing_ = true;
  if (pollers_ == 0) return;  // without releasing io_mu_
  auto none = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_) {
    return pollers_ == 0;
  };
  io_mu_.Await(absl::Condition(&none));
}

}  // namespace procpool::internal
