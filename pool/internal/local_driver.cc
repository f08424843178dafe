#include "pool/internal/local_driver.h"

#include <limits.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "pool/internal/chunk_state.h"
#include "pool/internal/limits.h"
#include "pool/internal/sandbox_policy.h"
#include "pool/internal/status_macros.h"
#include "pool/internal/wire.h"
#include "pool/internal/worker_connection.h"
#include "pool/runfiles.h"

namespace procpool::internal {

namespace {

// epoll tags: a worker's (id << 2) | what, or one of these.
constexpr uint64_t kWakeTag = ~uint64_t{0};
constexpr uint64_t kParkTimerTag = ~uint64_t{0} - 1;
enum : uint64_t { kSocket = 0, kStderr = 1, kPidfd = 2 };
uint64_t Tag(WorkerId id, uint64_t what) { return (id << 2) | what; }

constexpr size_t kCallOverhead = 32;  // a call's id, task and length in a frame
constexpr size_t kMaxRestartReasons = 16;
// While some worker runs a task with a time limit, its status page is read
// this often.
constexpr absl::Duration kObserveEvery = absl::Milliseconds(1);

std::string AbsolutePath(const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  char cwd[PATH_MAX];
  if (::getcwd(cwd, sizeof(cwd)) == nullptr) return path;
  return absl::StrCat(cwd, "/", path);
}

// A CLOCK_MONOTONIC time (the status page's) as an absl::Time, given the
// same instant in both clocks.
absl::Time FromMonotonic(uint64_t mono_ns, uint64_t now_mono_ns, absl::Time now) {
  return now - absl::Nanoseconds(static_cast<int64_t>(now_mono_ns - std::min(mono_ns, now_mono_ns)));
}

uint64_t MonotonicNowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

void AddInto(WorkerStats& into, const WorkerStatusPage& page, absl::Duration alive) {
  into.tasks_done += page.tasks_done.load(std::memory_order_relaxed);
  const absl::Duration busy = absl::Nanoseconds(page.busy_ns.load(std::memory_order_relaxed));
  into.busy += busy;
  into.idle += std::max(absl::ZeroDuration(), alive - busy);
  into.serialize += absl::Nanoseconds(page.codec_ns.load(std::memory_order_relaxed));
  into.peak_rss_bytes = std::max<uint64_t>(
      into.peak_rss_bytes, page.peak_rss_bytes.load(std::memory_order_relaxed));
}

SchedulerConfig ConfigFor(const PoolOptions& o) {
  SchedulerConfig c;
  c.kind = SchedulerConfig::Kind::kProcess;
  c.slots = static_cast<size_t>(o.max_workers);
  c.max_tasks_per_child = o.max_tasks_per_child;
  c.on_worker_death = o.on_worker_death;
  c.start_timeout = o.start_timeout;
  c.kill_grace = o.kill_grace;
  c.max_call_bytes = o.max_frame_bytes;
  c.batch_bytes = std::max<size_t>(1, std::min(size_t{1} << 20, o.max_frame_bytes / 2));
  return c;
}

PoolOptions Resolved(PoolOptions options) {
  if (options.max_workers <= 0) {
    options.max_workers = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  }
  for (std::string& p : options.plugins) p = AbsolutePath(p);
  for (SandboxPath& p : options.sandbox_paths) p.path = AbsolutePath(p.path);
  return options;
}

}  // namespace

thread_local bool LocalDriver::t_io_locked_ = false;

// ---------------------------------------------------------------------------
// Setup and teardown

LocalDriver::LocalDriver(PoolOptions options)
    : Driver(options, ConfigFor(options)),
      frame_budget_(std::max<size_t>(1, std::min(size_t{1} << 20, options.max_frame_bytes / 2))),
      launcher_(options_) {}

absl::StatusOr<std::unique_ptr<LocalDriver>> LocalDriver::Start(PoolOptions options) {
  options = Resolved(std::move(options));
  if (options.worker_path.empty()) {
    PROCPOOL_ASSIGN_OR_RETURN(options.worker_path, DefaultWorkerPath());
  }
  for (const std::string& p : options.plugins) {
    if (::access(p.c_str(), F_OK) != 0) return ErrnoToStatus(absl::StrCat("plugin ", p), errno);
  }
  for (const SandboxPath& p : options.sandbox_paths) {
    if (::access(p.path.c_str(), F_OK) != 0) {
      return ErrnoToStatus(absl::StrCat("PoolOptions::sandbox_paths: ", p.path), errno);
    }
  }
  // Hard limits: the memory mechanism is decided (and the pool's memory
  // cgroup made) once, before any worker starts.
  PROCPOOL_ASSIGN_OR_RETURN(std::unique_ptr<PoolLimits> limits,
                            PoolLimits::Create(options.limits));
  if (limits != nullptr) options.limits.memory_mechanism = limits->mechanism();
  std::unique_ptr<LocalDriver> d(new LocalDriver(std::move(options)));
  d->limits_ = std::move(limits);
  LocalDriver* self = d.get();
  d->MakeCancelChannel(
      [self](const TaskState& t, absl::Time deadline) { self->AssistWait(t, deadline); },
      [self] {
        // A parked socket is read by a waiter or, soon, the I/O thread; a
        // task watched by a callback should not wait that long.
        if (self->parked_.load(std::memory_order_acquire)) self->Wake();
      });
  d->epoll_fd_.Reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!d->epoll_fd_) return ErrnoToStatus("epoll_create1", errno);
  d->wake_fd_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!d->wake_fd_) return ErrnoToStatus("eventfd", errno);
  d->park_timer_.Reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!d->park_timer_) return ErrnoToStatus("timerfd_create", errno);
  for (auto [fd, tag] : {std::pair{d->wake_fd_.get(), kWakeTag},
                         std::pair{d->park_timer_.get(), kParkTimerTag}}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag;
    if (::epoll_ctl(d->epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      return ErrnoToStatus("epoll_ctl", errno);
    }
  }
  {
    absl::MutexLock l(&d->slots_mu_);
    d->slots_.resize(static_cast<size_t>(d->options_.max_workers));
  }
  d->io_thread_ = std::thread([self] { self->IoLoop(); });
  PROCPOOL_RETURN_IF_ERROR(d->AwaitStarted());
  return d;
}

LocalDriver::~LocalDriver() {
  if (io_thread_.joinable()) {
    DrainForDestruction();
    assist_off_.store(true);
    io_thread_.join();
  }
}

void LocalDriver::Terminate() {
  assist_off_.store(true);
  Driver::Terminate();
}

// ---------------------------------------------------------------------------
// Callers

void LocalDriver::Enqueue(std::shared_ptr<TaskState> task) {
  if (DispatchDirect(task)) return;
  std::vector<std::shared_ptr<TaskState>> one;
  one.push_back(std::move(task));
  Driver::EnqueueMany(one);
}

void LocalDriver::Wake() {
  if (!wake_pending_.exchange(true)) {
    uint64_t one = 1;
    ssize_t r = ::write(wake_fd_.get(), &one, sizeof(one));
    (void)r;  // EAGAIN means the counter is already non-zero: awake anyway
  }
}

std::vector<int> LocalDriver::WorkerPids() const {
  absl::MutexLock l(&slots_mu_);
  std::vector<int> out;
  for (const SlotRecord& s : slots_) {
    if (s.pid > 0) out.push_back(s.pid);
  }
  return out;
}

PoolStats LocalDriver::Stats() const {
  PoolStats out;
  const absl::Time now = absl::Now();
  {
    absl::MutexLock l(&slots_mu_);
    absl::Time newest = absl::InfinitePast();
    for (size_t i = 0; i < slots_.size(); ++i) {
      const SlotRecord& s = slots_[i];
      WorkerStats w = s.past;
      w.slot = static_cast<int>(i);
      w.pid = s.pid;
      if (s.page != nullptr && s.pid > 0) {
        const auto& page = *static_cast<const WorkerStatusPage*>(s.page->data());
        if (const uint32_t layers = page.sandbox_layers.load(std::memory_order_acquire);
            layers != 0 && s.started > newest) {
          out.sandbox = DescribeSandbox(layers);
          newest = s.started;
        }
        AddInto(w, page, now - s.started);
        w.rss_bytes = page.rss_bytes.load(std::memory_order_relaxed);
      }
      out.workers.push_back(std::move(w));
    }
  }
  AddCounters(out);
  out.shared_memory_args = shm_args_.load(std::memory_order_relaxed);
  out.shared_memory_results = shm_results_.load(std::memory_order_relaxed);
  out.direct_calls = direct_calls_.load(std::memory_order_relaxed);
  out.caller_reads = caller_reads_.load(std::memory_order_relaxed);
  if (limits_ != nullptr) out.limits = limits_->description();
  out.start_method = launcher_.Describe();
  out.spare_worker_pid = spare_pid_.load(std::memory_order_relaxed);
  out.template_starts = launcher_.template_starts();
  return out;
}

// ---------------------------------------------------------------------------
// The I/O thread

void LocalDriver::IoLoop() {
  t_io_locked_ = true;  // for the thread's whole life
  io_thread_id_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  absl::MutexLock io(&io_mu_);
  // The template (kZygote) is spawned by this thread, which lives as long
  // as the pool: its death signal, and its workers', follow this thread.
  launcher_.Prepare();
  sched_.Start(absl::Now(), actions_);
  Execute();
  SpawnPending();
  Publish();
  // Room for every descriptor of a few dozen workers, so that a worker's
  // stderr and its socket come in one batch (see below).
  epoll_event events[256];
  int timeout_ms = 0;
  bool stopped = false;  // a Shutdown or Terminate was taken
  while (true) {
    io_mu_.Unlock();
    const int ready = ::epoll_wait(epoll_fd_.get(), events, 256, timeout_ms);
    const int wait_errno = errno;
    io_mu_.Lock();
    if (ready < 0 && wait_errno != EINTR) {
      std::fprintf(stderr, "procpool: epoll_wait: %s\n", std::strerror(wait_errno));
      sched_.Terminate(absl::Now(), actions_);
    }
    // Two passes: stderr pipes first, then sockets and exits. A worker
    // writes its stderr before its answer, so when its socket is readable
    // its pipe already shows in this batch: what a task wrote is forwarded
    // before its future resolves, without a read of an empty pipe per
    // answer.
    for (int i = 0; i < ready; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kWakeTag || tag == kParkTimerTag) {
        uint64_t v;
        ssize_t r = ::read(tag == kWakeTag ? wake_fd_.get() : park_timer_.get(), &v, sizeof(v));
        (void)r;
        if (tag == kParkTimerTag) park_timer_armed_ = false;
      } else if ((tag & 3) == kStderr) {
        if (WorkerConnection* w = Find(tag >> 2)) {
          w->ReadStderr(options_.forward_worker_stderr, options_.stderr_tail_lines);
        }
      }
    }
    for (int i = 0; i < ready; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kWakeTag || tag == kParkTimerTag || (tag & 3) == kStderr) continue;
      WorkerConnection* w = Find(tag >> 2);
      if (w == nullptr) continue;  // gone since
      if ((tag & 3) == kPidfd) {
        OnExited(*w);
      } else if (!w->caller_owned && !w->hung_up) {  // else a caller reads it
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
          OnReadable(*w, /*read_stderr=*/false);
        }
        if (!w->hung_up && !w->exited && (events[i].events & EPOLLOUT)) {
          if (!w->Flush()) HungUp(*w);
          UpdateInterest(*w);
        }
      }
      Execute();
    }
    wake_pending_.store(false);
    UnparkLocked();
    const absl::Time now = absl::Now();
    stopped = TakeRequests(now) || stopped;
    if (stopped && !spares_off_) DropSpare();
    for (WorkerId id : std::exchange(exits_deferred_, {})) {
      if (WorkerConnection* w = Find(id)) OnExited(*w);
    }
    if (sched_.WantsObservation()) {
      if (now >= next_observe_ || next_observe_ == absl::InfiniteFuture()) {
        ObserveWorkers(now);
        next_observe_ = now + kObserveEvery;
      }
    } else {
      next_observe_ = absl::InfiniteFuture();
    }
    if (now >= sched_.NextWakeup()) sched_.Tick(now, actions_);
    Execute();
    SpawnPending();
    Publish();
    if (stopped && sched_.Drained() && workers_.empty()) break;
    const absl::Time next = std::min(sched_.NextWakeup(), next_observe_);
    timeout_ms = next == absl::InfiniteFuture()
                     ? -1
                     : static_cast<int>(std::clamp<int64_t>(
                           absl::ToInt64Milliseconds(absl::Ceil(next - absl::Now(),
                                                                absl::Milliseconds(1))),
                           0, 60'000));
  }
  Publish();
  IoThreadDone();
}

WorkerConnection* LocalDriver::Find(WorkerId id) {
  auto it = workers_.find(id);
  if (it != workers_.end()) return it->second.get();
  return spare_ != nullptr && spare_->id == id ? spare_.get() : nullptr;
}

void LocalDriver::Unwatch(int fd) {
  if (fd >= 0) ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

void LocalDriver::ObserveWorkers(absl::Time now) {
  const uint64_t now_mono = MonotonicNowNs();
  for (WorkerId id : sched_.ObservedWorkers()) {
    WorkerConnection* w = Find(id);
    if (w == nullptr) continue;
    const WorkerStatusPage& page = w->page();
    const uint64_t running = page.running_task.load(std::memory_order_acquire);
    const uint32_t item = page.running_item.load(std::memory_order_acquire);
    absl::Time since;
    if (item == 0) {  // the call's start, which the worker publishes
      since = FromMonotonic(page.running_since_ns.load(std::memory_order_relaxed), now_mono, now);
    } else if (running == w->observed_task && item == w->observed_item) {
      since = w->observed_since;
    } else {
      // A later item started since the last look (at most a period ago):
      // its time limit runs from now, so it is never cut short.
      since = now;
    }
    w->observed_task = running;
    w->observed_item = item;
    w->observed_since = since;
    sched_.Observe(id, running, item, since);
  }
}

// ---------------------------------------------------------------------------
// Actions

void LocalDriver::WriteSends(std::vector<SendAction>& sends) {
  size_t i = 0;
  while (i < sends.size()) {
    WorkerConnection* w = Find(sends[i].worker);
    size_t j = i;
    while (j < sends.size() && sends[j].worker == sends[i].worker) ++j;
    if (w != nullptr && !w->hung_up && !w->exited) {
      // Calls decided in several steps may follow each other here: a frame
      // holds at most frame_budget_ bytes of them (one call alone always
      // fits: larger ones were refused), so it stays under the limit.
      std::optional<CallsFrameBuilder> frame;
      size_t bytes = 0;
      for (size_t k = i; k < j; ++k) {
        const SendAction& s = sends[k];
        TaskState& t = *s.call;
        std::string_view args = t.args();
        if (s.items > 0) args = t.AsChunk()->ArgsPrefix(s.items);
        if (frame.has_value() && bytes + args.size() > frame_budget_) {
          frame->Finish();
          frame.reset();
        }
        if (!frame.has_value()) {
          frame.emplace(&w->out);
          bytes = 0;
        }
        w->sent_seq = s.seq;
        if (w->AddRegionCall(*frame, t.id(), t.task(), args, s.seq,
                             options_.shared_memory_min_bytes)) {
          shm_args_.fetch_add(1, std::memory_order_relaxed);
          bytes += kRegionRefSize + kCallOverhead;
          // A call that never runs twice needs its arguments again only if
          // the worker gives it back unstarted, and then the region still
          // holds them: they are kept there alone.
          ChunkState* chunk = t.AsChunk();
          if (t.policy().retries == 0 && (chunk == nullptr || chunk->size() == 1)) {
            auto [copy, pin] = w->PinCallArgs(args.size());
            t.ParkArgs(copy, std::move(pin));
          }
        } else {
          frame->Add(t.id(), t.task(), args);
          bytes += args.size() + kCallOverhead;
        }
      }
      if (frame.has_value()) frame->Finish();
      if (!w->want_write && !w->Flush()) {
        HungUp(*w);
      } else {
        UpdateInterest(*w);
      }
    }
    i = j;
  }
  sends.clear();
}

void LocalDriver::Control(const Action& a) {
  switch (a.kind) {
    case Action::Kind::kSpawn:
      spawns_pending_.emplace_back(a.worker, a.slot);
      // From a caller on the fast path: the I/O thread spawns.
      if (std::this_thread::get_id() != io_thread_id_.load(std::memory_order_relaxed)) Wake();
      return;
    case Action::Kind::kClose:
      if (DropPendingSpawn(a.worker)) return;
      if (WorkerConnection* w = Find(a.worker); w != nullptr && !w->closed) {
        w->closed = true;
        // Its answers can still be read; it exits at the end of its input.
        ::shutdown(w->sock.get(), SHUT_WR);
      }
      return;
    case Action::Kind::kSignal:
      if (DropPendingSpawn(a.worker)) return;
      if (WorkerConnection* w = Find(a.worker); w != nullptr && !w->exited) {
        w->proc.Kill(a.signal);
      }
      return;
    case Action::Kind::kSlotNote: {
      absl::MutexLock l(&slots_mu_);
      if (a.slot >= slots_.size()) return;
      WorkerStats& past = slots_[a.slot].past;
      if (a.restart) ++past.restarts;
      past.restart_reasons.push_back(a.text);
      if (past.restart_reasons.size() > kMaxRestartReasons) {
        past.restart_reasons.erase(past.restart_reasons.begin());
      }
      return;
    }
    case Action::Kind::kCancelRemote:
      return;  // agents only
  }
}

void LocalDriver::SpawnPending() {
  while (!spawns_pending_.empty() || !unspawned_.empty()) {
    for (auto [id, slot] : std::exchange(spawns_pending_, {})) Spawn(id, slot);
    for (WorkerId id : std::exchange(unspawned_, {})) {
      WorkerExit exit;
      exit.how = "stopped before it was started";
      exit.killed = true;
      sched_.OnExit(id, exit, absl::Now(), actions_);
    }
    Execute();
  }
  MaybeMakeSpare();
}

bool LocalDriver::DropPendingSpawn(WorkerId id) {
  auto it = std::find_if(spawns_pending_.begin(), spawns_pending_.end(),
                         [id](const auto& p) { return p.first == id; });
  if (it == spawns_pending_.end()) return false;
  spawns_pending_.erase(it);
  unspawned_.push_back(id);
  return true;
}

absl::Status LocalDriver::WatchWorker(const WorkerConnection& w, int op) {
  const std::pair<int, uint64_t> fds[] = {{w.sock.get(), kSocket},
                                          {w.err.get(), kStderr},
                                          {w.proc.pidfd(), kPidfd}};
  for (auto [fd, what] : fds) {
    epoll_event ev{};
    ev.events = what == kSocket ? (EPOLLIN | EPOLLRDHUP | (w.want_write ? EPOLLOUT : 0)) : EPOLLIN;
    ev.data.u64 = Tag(w.id, what);
    if (fd < 0 || ::epoll_ctl(epoll_fd_.get(), op, fd, &ev) != 0) {
      return ErrnoToStatus("epoll_ctl(worker)", errno);
    }
  }
  return absl::OkStatus();
}

void LocalDriver::RecordInSlot(const WorkerConnection& w) {
  absl::MutexLock l(&slots_mu_);
  SlotRecord& s = slots_[w.slot];
  // The worker it replaces may be on its way out still (it hung up, or
  // is being stopped): what it did counts from now as the slot's past.
  FoldIntoPastLocked(s);
  s.pid = w.pid();
  s.page = w.status;
  s.started = absl::Now();
}

absl::StatusOr<std::unique_ptr<WorkerConnection>> LocalDriver::StartConnection(
    WorkerId id, size_t slot, bool spare) {
  PROCPOOL_ASSIGN_OR_RETURN(
      std::unique_ptr<WorkerConnection> w,
      WorkerConnection::Spawn(options_, id, slot,
                              [this, spare](const std::vector<std::string>& argv,
                                            const std::vector<ChildProcess::FdMapping>& fds) {
                                return spare ? launcher_.ForkFromTemplate(argv, fds)
                                             : launcher_.Launch(argv, fds);
                              }));
  // On an error from here, ~WorkerConnection kills and reaps the worker.
  PROCPOOL_RETURN_IF_ERROR(WatchWorker(*w, EPOLL_CTL_ADD));
  if (limits_ != nullptr) {  // hard limits: the worker's memory cgroup
    PROCPOOL_ASSIGN_OR_RETURN(std::unique_ptr<MemoryCgroup> group, limits_->Attach(id, w->pid()));
    if (group != nullptr) cgroups_.emplace(id, std::move(group));
  }
  w->spare = spare;
  return w;
}

void LocalDriver::Spawn(WorkerId id, size_t slot) {
  if (AdoptSpare(id, slot)) return;
  absl::StatusOr<std::unique_ptr<WorkerConnection>> w =
      StartConnection(id, slot, /*spare=*/false);
  if (!w.ok()) {
    sched_.OnSpawnFailed(id, w.status(), absl::Now(), actions_);
    return;
  }
  sched_.OnSpawned(id, (*w)->pid(), &(*w)->claims);
  RecordInSlot(**w);
  workers_.emplace(id, *std::move(w));
}

void LocalDriver::MaybeMakeSpare() {
  // Not before every first worker has said hello: the spare would hold up
  // the pool's start.
  if (spare_ != nullptr || spares_off_ || options_.start_method != StartMethod::kZygote ||
      sched_.start_state() != Scheduler::StartState::kStarted || !launcher_.TemplateReady()) {
    return;
  }
  absl::StatusOr<std::unique_ptr<WorkerConnection>> w =
      StartConnection(next_spare_id_++, /*slot=*/0, /*spare=*/true);
  if (!w.ok()) {
    if (++spare_deaths_ >= kMaxSpareDeaths) spares_off_ = true;
    return;
  }
  spare_pid_.store((*w)->pid(), std::memory_order_relaxed);
  spare_ = *std::move(w);
}

bool LocalDriver::AdoptSpare(WorkerId id, size_t slot) {
  if (spare_ == nullptr) return false;
  if (spare_->hung_up || spare_->exited) return false;  // its exit is on its way
  std::unique_ptr<WorkerConnection> w = std::move(spare_);
  spare_pid_.store(0, std::memory_order_relaxed);
  const WorkerId old_id = w->id;
  w->id = id;
  w->slot = slot;
  w->spare = false;
  if (!WatchWorker(*w, EPOLL_CTL_MOD).ok()) {
    w->id = old_id;  // its cgroup, if any, is still filed under this id
    w.reset();
    cgroups_.erase(old_id);
    return false;
  }
  if (auto group = cgroups_.extract(old_id); !group.empty()) {
    group.key() = id;
    cgroups_.insert(std::move(group));
  }
  spare_deaths_ = 0;
  sched_.OnSpawned(id, w->pid(), &w->claims);
  RecordInSlot(*w);
  const bool ready = w->ready;
  workers_.emplace(id, std::move(w));
  // A spare that has not said hello yet is ready when it does.
  if (ready) sched_.OnReady(id, 1, absl::Now(), actions_);
  return true;
}

void LocalDriver::DropSpare() {
  spares_off_ = true;
  if (spare_ == nullptr) return;
  UnwatchWorker(*spare_);
  ForgetSpare();  // kills its process group and reaps it
}

void LocalDriver::ForgetSpare() {
  const WorkerId id = spare_->id;
  spare_.reset();
  spare_pid_.store(0, std::memory_order_relaxed);
  cgroups_.erase(id);  // after the reap
}

void LocalDriver::UnwatchWorker(const WorkerConnection& w) {
  if (!w.caller_owned && !w.hung_up) Unwatch(w.sock.get());
  Unwatch(w.proc.pidfd());
  Unwatch(w.err ? w.err.get() : -1);
}

void LocalDriver::FoldIntoPastLocked(SlotRecord& s) {
  if (s.page == nullptr) return;
  AddInto(s.past, *static_cast<const WorkerStatusPage*>(s.page->data()),
          absl::Now() - s.started);
  s.pid = 0;
  s.page = nullptr;
}

void LocalDriver::SlotGone(const WorkerConnection& w) {
  absl::MutexLock l(&slots_mu_);
  SlotRecord& s = slots_[w.slot];
  if (s.page == w.status) FoldIntoPastLocked(s);
}

void LocalDriver::UpdateInterest(WorkerConnection& w) {
  const bool want = !w.out.empty();
  if (w.caller_owned) {
    // Parked for a caller that is not reading it: the I/O thread takes it
    // back to finish writing. (A caller that is reading it gives it back
    // when it sees unsent bytes.)
    if (want && !w.assisting) RearmLocked(w);
    return;
  }
  if (want == w.want_write || w.hung_up) return;
  w.want_write = want;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0);
  ev.data.u64 = SocketTag(w.id);
  ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, w.sock.get(), &ev);
}

}  // namespace procpool::internal
