// The serial fast path of the local driver: a caller that submits a lone
// task, and then waits on it, does the worker's I/O on its own thread
// instead of waking the I/O thread twice (docs/ARCHITECTURE.md). It only
// ever tries io_mu_: if the I/O thread holds it, the pool is busy and the
// caller takes the ordinary way. The decisions stay the scheduler's: the
// caller feeds it the same events the I/O thread would.

#include <poll.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>

#include <algorithm>

#include "absl/time/clock.h"
#include "pool/internal/local_driver.h"
#include "pool/internal/wire.h"
#include "pool/internal/worker_connection.h"

namespace procpool::internal {

namespace {

// Bytes a frame adds around a call's arguments, with room to spare.
constexpr size_t kFrameOverhead = 64;
// How long a socket parked by DispatchDirect waits for its waiter before
// the I/O thread takes it back (so a task nobody waits on, e.g. one read
// through a done-callback, is still answered).
constexpr absl::Duration kParkFor = absl::Milliseconds(1);
// How long a caller keeps reading its worker's socket itself before it
// hands it back and waits to be woken: the fast path is for short tasks.
constexpr absl::Duration kAssistFor = absl::Milliseconds(20);
constexpr absl::Duration kAssistPoll = absl::Milliseconds(1);

}  // namespace

// Marks a caller thread as holding an io_mu_ (see t_io_locked_).
class LocalDriver::IoLockedScope {
 public:
  IoLockedScope() : was_(t_io_locked_) { t_io_locked_ = true; }
  ~IoLockedScope() { t_io_locked_ = was_; }
  IoLockedScope(const IoLockedScope&) = delete;
  IoLockedScope& operator=(const IoLockedScope&) = delete;

 private:
  const bool was_;
};

bool LocalDriver::DispatchDirect(std::shared_ptr<TaskState>& task) {
  if (t_io_locked_ || queued_hint_.load(std::memory_order_relaxed) ||
      task->AsChunk() != nullptr ||
      task->args().size() + kFrameOverhead > options_.max_frame_bytes) {
    return false;
  }
  if (!io_mu_.TryLock()) return false;
  bool sent = false;
  {
    IoLockedScope scope;
    const WorkerId id = sched_.IdleWorker();
    WorkerConnection* w = id == 0 ? nullptr : Find(id);
    bool accepting;
    {
      absl::MutexLock l(&mu_);
      accepting = accepting_ && intake_.empty();
    }
    if (accepting && w != nullptr && !w->assisting && !w->hung_up && w->out.empty()) {
      Adopt(*task);
      const bool timed = task->policy().timeout != absl::InfiniteDuration();
      // Park the socket before sending: an answer that comes before this
      // thread (or whoever waits) reads it must not wake the I/O thread,
      // which is the hop this path exists to avoid. A task with a time
      // limit is left to the I/O thread, which watches it.
      if (!timed && !w->caller_owned &&
          ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, w->sock.get(), nullptr) == 0) {
        w->caller_owned = true;
        w->want_write = false;
        ArmParkTimerLocked();
      }
      sched_.Submit(std::move(task), absl::Now(), actions_);
      Execute();
      if (w->caller_owned && !w->out.empty()) ReturnToIoThreadLocked(*w);
      // The I/O thread is asleep and knows nothing of this task: wake it
      // only if it has something to do.
      if (timed || IoThreadHasWorkLocked()) Wake();
      direct_calls_.fetch_add(1, std::memory_order_relaxed);
      sent = true;
    }
  }
  io_mu_.Unlock();
  return sent;
}

void LocalDriver::AssistWait(const TaskState& t, absl::Time deadline) {
  // Only a lone Submit: a map's consumer waiting on its chunks would poll
  // sockets while the I/O thread keeps the other workers busy, and spend
  // the caller's CPU for no gain.
  if (t_io_locked_ || (t.task() & kChunkBit) != 0 ||
      assist_off_.load(std::memory_order_relaxed) ||
      queued_hint_.load(std::memory_order_relaxed)) {
    return;
  }
  const absl::Time give_back_at = std::min(deadline, absl::Now() + kAssistFor);
  // If the I/O thread holds the lock it is running, and it takes back a
  // parked socket in this very iteration, so a plain wait is served at
  // once. If another caller holds it, wake the I/O thread to take back a
  // parked socket now rather than when the park timer fires.
  if (!io_mu_.TryLock()) {
    if (parked_.load(std::memory_order_acquire)) Wake();
    return;
  }
  WorkerConnection* w = nullptr;
  int fd = -1, err_fd = -1, pid_fd = -1;
  {
    IoLockedScope scope;
    w = ClaimForCallerLocked(t);
    if (w != nullptr) {
      fd = w->sock.get();
      err_fd = w->err ? w->err.get() : -1;
      pid_fd = w->proc.pidfd();
    }
  }
  io_mu_.Unlock();
  if (w == nullptr) return;
  while (true) {
    // The connection outlives this poll: the I/O thread defers a claimed
    // worker's exit until the claim ends.
    const absl::Duration left =
        std::clamp(give_back_at - absl::Now(), absl::ZeroDuration(), kAssistPoll);
    const timespec ts = absl::ToTimespec(left);
    // The stderr pipe too, to learn whether it has bytes: the worker
    // writes them before its answer. And the pidfd, to see a death.
    pollfd p[3] = {{fd, POLLIN | POLLRDHUP, 0}, {err_fd, POLLIN, 0}, {pid_fd, POLLIN, 0}};
    const int r = ::ppoll(p, 3, &ts, nullptr);
    absl::MutexLock l(&io_mu_);
    IoLockedScope scope;
    if (r != 0 && !w->hung_up) {  // r < 0 (EINTR): read anyway
      OnReadable(*w, /*read_stderr=*/r < 0 || p[1].revents != 0);
      Execute();
      if (t.Done()) caller_reads_.fetch_add(1, std::memory_order_relaxed);
    }
    const bool keep = !w->hung_up && p[2].revents == 0 && !t.Done() &&
                      w->out.empty() && absl::Now() < give_back_at &&
                      !assist_off_.load(std::memory_order_relaxed) &&
                      sched_.LoneCall(w->id, t.id()) && !IoThreadHasWorkLocked();
    if (!keep) {
      if (CanStayParkedLocked(*w) && p[2].revents == 0) {
        // Serial use: the next task will most likely go to this idle
        // worker from this thread again, so its socket stays parked (the
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
  }
}

WorkerConnection* LocalDriver::ClaimForCallerLocked(const TaskState& t) {
  if (t.Done() || !sched_.LoneCall(t.worker(), t.id())) return nullptr;
  WorkerConnection* w = Find(t.worker());
  if (w == nullptr || w->hung_up || w->exited || w->assisting || !w->ready ||
      !w->out.empty() || IoThreadHasWorkLocked()) {
    return nullptr;
  }
  if (!w->caller_owned) {  // else parked by DispatchDirect: out already
    if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, w->sock.get(), nullptr) != 0) {
      return nullptr;
    }
    w->caller_owned = true;
    w->want_write = false;
  }
  w->assisting = true;
  return w;
}

void LocalDriver::RearmLocked(WorkerConnection& w) {
  w.caller_owned = false;
  w.assisting = false;
  if (w.hung_up || w.exited) return;
  epoll_event ev{};
  w.want_write = !w.out.empty();
  ev.events = EPOLLIN | EPOLLRDHUP | (w.want_write ? EPOLLOUT : 0);
  ev.data.u64 = SocketTag(w.id);
  ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, w.sock.get(), &ev);
}

void LocalDriver::ReturnToIoThreadLocked(WorkerConnection& w) {
  RearmLocked(w);
  if (w.hung_up || IoThreadHasWorkLocked()) Wake();
}

bool LocalDriver::IoThreadHasWorkLocked() {
  if (!exits_deferred_.empty() || !spawns_pending_.empty() || !unspawned_.empty() ||
      queued_hint_.load(std::memory_order_relaxed)) {
    return true;
  }
  absl::MutexLock l(&mu_);
  return RequestsPendingLocked();
}

bool LocalDriver::CanStayParkedLocked(const WorkerConnection& w) {
  return !w.hung_up && !w.exited && w.out.empty() &&
         sched_.IdleWorker() == w.id && !assist_off_.load(std::memory_order_relaxed) &&
         !IoThreadHasWorkLocked();
}

void LocalDriver::ArmParkTimerLocked() {
  parked_.store(true, std::memory_order_release);
  if (park_timer_armed_) return;
  itimerspec spec{};
  spec.it_value = absl::ToTimespec(kParkFor);
  if (::timerfd_settime(park_timer_.get(), 0, &spec, nullptr) == 0) park_timer_armed_ = true;
}

void LocalDriver::UnparkLocked() {
  if (!parked_.load(std::memory_order_relaxed)) return;
  parked_.store(false, std::memory_order_relaxed);
  for (auto& [id, w] : workers_) {
    if (w->caller_owned && !w->assisting) RearmLocked(*w);
  }
}

}  // namespace procpool::internal
