// The scheduler's dispatch policy: which queued calls go to which worker.
//
//   - Batches from measured task time: a worker is sent about a millisecond
//     of work at a time (1 ms / average, between 1 and 4096 calls), one at
//     a time until anything was measured.
//   - A window of two batches per worker while tasks are short, so that a
//     worker never waits for the pool between batches; two calls (one
//     running, one next) while they are long.
//   - The least loaded ready worker first, the most recently used among
//     equals (serial calls stay on one warm worker), and a
//     fair share of a short queue each (ceil(queued / ready workers)).
//   - Nothing more for a worker whose current call has run far longer than
//     calls usually do; and when a worker is idle with nothing queued, a
//     call waiting behind such a long one is taken back (ClaimTable) and
//     given to the idle worker, so a quick task never waits behind a hung
//     one.
//   - Never more calls than max_tasks_per_child, nor more unanswered calls
//     than the claim table has words.
// Ready workers are kept in a binary heap, so a decision costs O(log
// workers), not a scan.

#include <algorithm>
#include <utility>

#include "pool/internal/chunk_state.h"
#include "pool/internal/scheduler.h"

namespace procpool::internal {

namespace {

constexpr size_t kMaxBatch = 4096;
constexpr uint64_t kTargetBatchNs = 1'000'000;   // 1 ms of work per batch
constexpr uint64_t kPipelineBelowNs = 1'000'000;
constexpr uint64_t kLongCallMinNs = 1'000'000;

size_t ItemsFor(uint64_t avg_ns, uint64_t target_ns) {
  if (avg_ns == 0) return 1;  // nothing measured yet: one at a time
  return std::clamp<size_t>(target_ns / avg_ns, 1, kMaxBatch);
}

size_t BatchFor(uint64_t avg_ns) { return ItemsFor(avg_ns, kTargetBatchNs); }

// What a call weighs in a worker's load: 1 for a process (chunks included),
// its unanswered items for an agent (which runs them on several workers).
size_t Units(SchedulerConfig::Kind kind, TaskState& t) {
  if (kind == SchedulerConfig::Kind::kProcess) return 1;
  ChunkState* chunk = t.AsChunk();
  return chunk != nullptr ? std::max<size_t>(1, chunk->unanswered()) : 1;
}

}  // namespace

size_t Scheduler::BatchSize() const { return BatchFor(avg_task_ns()); }

size_t Scheduler::MapChunkFor(uint64_t avg_ns, uint64_t avg_bytes) {
  const size_t c = ItemsFor(avg_ns, kMapChunkNs);
  return avg_bytes == 0 ? c : std::clamp<size_t>(kMapChunkBytes / avg_bytes, 1, c);
}

size_t Scheduler::MapWindowFor(uint64_t avg_ns, uint64_t avg_bytes, size_t chunksize,
                               size_t processes) {
  const size_t n = std::max<size_t>(1, processes);
  const size_t per = chunksize == 0 ? MapChunkFor(avg_ns, avg_bytes) : BatchFor(avg_ns);
  const size_t w = std::clamp<size_t>(n * (2 * per + 1), 2 * n, 4 * kMaxBatch);
  return std::max(w, 2 * chunksize * n);
}

size_t Scheduler::Window(const Worker& w) const {
  const uint64_t avg = avg_task_ns();
  const size_t per = avg == 0 ? 1 : avg < kPipelineBelowNs ? 2 * BatchFor(avg) : 2;
  if (config_.kind == SchedulerConfig::Kind::kAgent) {
    return std::min(w.capacity * per, 4 * kMaxBatch);
  }
  return std::min(per, kClaimSlots - 1);
}

absl::Time Scheduler::HeadStarted(const Worker& w) const {
  if (w.running_task != 0) return w.running_since;
  for (const Call& c : w.inflight) {
    if (!c.abandoned) return std::max(c.sent, w.last_answer);
  }
  return absl::InfiniteFuture();
}

bool Scheduler::OnLongCall(const Worker& w, absl::Time now) const {
  if (config_.kind != SchedulerConfig::Kind::kProcess || w.load == 0) return false;
  const uint64_t long_ns = std::max<uint64_t>(2 * avg_task_ns(), kLongCallMinNs);
  return now - HeadStarted(w) >= absl::Nanoseconds(long_ns);
}

WorkerId Scheduler::IdleWorker() const {
  if (ready_heap_.empty()) return 0;
  const Worker* w = ready_heap_[0];
  if (w->load != 0 || !w->inflight.empty()) return 0;
  if (config_.max_tasks_per_child > 0 && w->dispatched >= config_.max_tasks_per_child) {
    return 0;
  }
  return w->id;
}

bool Scheduler::Saturated() const {
  // The least loaded (relative to capacity) comes first.
  return !ready_heap_.empty() && ready_heap_[0]->load >= Window(*ready_heap_[0]);
}

bool Scheduler::LoneCall(WorkerId worker, uint64_t id) const {
  auto it = workers_.find(worker);
  if (it == workers_.end()) return false;
  const Worker& w = *it->second;
  return w.state == WorkerState::kReady && w.load == 1 && w.inflight.size() == 1 &&
         !w.inflight.front().abandoned && w.inflight.front().task->id() == id;
}

void Scheduler::AddInflight(Worker& w, Call call) {
  TaskState& t = *call.task;
  w.load += Units(config_.kind, t);
  inflight_calls_.fetch_add(1, std::memory_order_relaxed);
  if (config_.kind == SchedulerConfig::Kind::kAgent) {
    w.by_id.emplace(t.id(), std::move(call));
    return;
  }
  if (t.policy().timeout != absl::InfiniteDuration()) {
    ++w.timed;
    ++timed_calls_;
  }
  w.inflight.push_back(std::move(call));
}

void Scheduler::RemovedFromFlight(Worker& w, const Call& call) {
  if (call.abandoned) return;
  TaskState& t = *call.task;
  // What was observed running is over (the same task may come back to this
  // worker, and must not inherit that start time).
  if (w.running_task == t.id()) w.running_task = 0;
  w.load -= std::min(w.load, Units(config_.kind, t));
  inflight_calls_.fetch_sub(1, std::memory_order_relaxed);
  if (config_.kind == SchedulerConfig::Kind::kProcess &&
      t.policy().timeout != absl::InfiniteDuration()) {
    --w.timed;
    --timed_calls_;
  }
}

const std::vector<WorkerId>& Scheduler::ObservedWorkers() {
  observed_.clear();
  for (const auto& [id, w] : workers_) {
    if (w->timed > 0 && w->state != WorkerState::kGone) observed_.push_back(id);
  }
  return observed_;
}

void Scheduler::Dispatch(absl::Time now, Actions& out) {
  while (!queue_.empty() && queue_.front()->Done()) {
    queue_.front()->ReleaseArgs();  // cancelled while queued
    queue_.pop_front();
    queued_.fetch_sub(1, std::memory_order_relaxed);
  }
  if (!queue_.empty()) FillVacancies(now, out);
  if (ready_heap_.empty()) return;
  if (queue_.empty() && !Steal(now)) return;
  const size_t batch = BatchSize();
  const uint64_t quota = config_.max_tasks_per_child;
  const bool agents = config_.kind == SchedulerConfig::Kind::kAgent;
  const size_t total_capacity = ready_capacity_;
  std::vector<Worker*> aside;
  while (!queue_.empty() && !ready_heap_.empty()) {
    Worker* w = ready_heap_[0];
    const size_t window = Window(*w);
    if (w->load >= window) break;  // the least loaded has no room: none has
    if ((quota > 0 && w->dispatched >= quota) ||
        (!agents && w->inflight.size() + 1 >= kClaimSlots) || OnLongCall(*w, now)) {
      HeapRemove(w);
      aside.push_back(w);
      continue;
    }
    const size_t queued = queue_.size();
    size_t take = std::min(batch * (agents ? w->capacity : 1), window - w->load);
    // Spread a short queue instead of filling the first worker.
    take = std::min(take, agents ? std::max<size_t>(1, (queued * w->capacity +
                                                        total_capacity - 1) /
                                                           std::max<size_t>(1, total_capacity))
                                 : (queued + ready_count_ - 1) / ready_count_);
    if (quota > 0) take = std::min<size_t>(take, quota - w->dispatched);
    size_t bytes = 0;
    while (take > 0 && !queue_.empty()) {
      const std::shared_ptr<TaskState>& next = queue_.front();
      if (bytes > 0 && bytes + next->args().size() > config_.batch_bytes) break;
      std::shared_ptr<TaskState> t = std::move(queue_.front());
      queue_.pop_front();
      queued_.fetch_sub(1, std::memory_order_relaxed);
      const uint64_t seq = w->sent_seq + 1;
      if (!t->TryDispatch(w->claims, seq, w->id)) {  // cancelled while queued
        t->ReleaseArgs();
        continue;
      }
      w->sent_seq = seq;
      ++w->dispatched;
      bytes += t->args().size() + 32;
      const size_t units = Units(config_.kind, *t);
      ChunkState* chunk = t->AsChunk();
      const size_t items = chunk != nullptr && chunk->one_item_per_call ? 1 : 0;
      out.sends.push_back(SendAction{w->id, t.get(), seq, items});
      AddInflight(*w, Call{std::move(t), seq, now, items});
      take -= std::min(take, units);
    }
    w->stamp = ++stamp_;
    HeapFix(w);
  }
  for (Worker* w : aside) HeapPush(w);
  if (queue_.empty()) Steal(now);  // arms the next check, if any
}

bool Scheduler::Steal(absl::Time now) {
  if (config_.kind != SchedulerConfig::Kind::kProcess || ready_heap_.empty() ||
      ready_heap_[0]->load != 0) {
    return false;
  }
  // An idle worker and nothing queued: take back the calls waiting behind
  // one that has run kLongCallMinNs or more, however long calls usually
  // take: the idle worker starts them now, the busy one only once that
  // call is done. The earliest time a call ahead of others reaches
  // kLongCallMinNs is the next check. None can before the time the last
  // scan found, nor within kLongCallMinNs of that scan (a call sent since
  // started after it): a scan of every worker then runs at most once per
  // kLongCallMinNs, not once per answer.
  if (now < steal_scan_not_before_) {
    ArmStealCheck(steal_scan_not_before_, now);
    return false;
  }
  const absl::Duration long_call = absl::Nanoseconds(kLongCallMinNs);
  absl::Time next_check = absl::InfiniteFuture();
  bool stole = false;
  for (auto& [id, wp] : workers_) {
    Worker& v = *wp;
    if (v.state == WorkerState::kGone || v.load < 2) continue;
    const absl::Time head_started = HeadStarted(v);
    if (now - head_started < long_call) {
      next_check = std::min(next_check, head_started + long_call);
      continue;
    }
    bool head = true;
    for (Call& c : v.inflight) {
      if (c.abandoned) continue;
      if (head) {  // the long one itself
        head = false;
        continue;
      }
      if (!c.task->Reclaim()) continue;  // it started meanwhile
      RemovedFromFlight(v, c);
      c.abandoned = true;
      queue_.push_back(c.task);
      queued_.fetch_add(1, std::memory_order_relaxed);
      stole = true;
    }
    HeapFix(&v);
  }
  steal_scan_not_before_ =
      stole ? now : std::min(next_check, now + long_call);
  if (!stole && next_check != absl::InfiniteFuture()) ArmStealCheck(next_check, now);
  return stole;
}

void Scheduler::ArmStealCheck(absl::Time at, absl::Time now) {
  if (at > now && (at < steal_check_at_ || steal_check_at_ <= now)) {
    steal_check_at_ = at;
    ArmTimer(at, TimerKind::kSteal, 0, 0);
  }
}

// ---------------------------------------------------------------------------
// The heap of ready workers, least loaded first, then the one given work
// most recently: a short queue is still spread (each worker takes its fair
// share, and a worker given work is no longer least loaded), while calls
// that come one at a time go to the same warm worker (its caches, its
// parked socket; an MPI agent still polling) instead of waking an idle one.

bool Scheduler::HeapLess(const Worker* a, const Worker* b) const {
  // Loads relative to capacity (agents differ in size): a/ca < b/cb.
  const size_t la = a->load * b->capacity, lb = b->load * a->capacity;
  return la != lb ? la < lb : a->stamp > b->stamp;
}

void Scheduler::HeapSiftUp(size_t i) {
  while (i > 0) {
    const size_t parent = (i - 1) / 2;
    if (!HeapLess(ready_heap_[i], ready_heap_[parent])) break;
    std::swap(ready_heap_[i], ready_heap_[parent]);
    ready_heap_[i]->heap_pos = i;
    ready_heap_[parent]->heap_pos = parent;
    i = parent;
  }
}

void Scheduler::HeapSiftDown(size_t i) {
  const size_t n = ready_heap_.size();
  while (true) {
    size_t best = i;
    for (size_t c : {2 * i + 1, 2 * i + 2}) {
      if (c < n && HeapLess(ready_heap_[c], ready_heap_[best])) best = c;
    }
    if (best == i) break;
    std::swap(ready_heap_[i], ready_heap_[best]);
    ready_heap_[i]->heap_pos = i;
    ready_heap_[best]->heap_pos = best;
    i = best;
  }
}

void Scheduler::HeapPush(Worker* w) {
  if (w->heap_pos != SIZE_MAX || w->state != WorkerState::kReady || w->disconnected) return;
  w->heap_pos = ready_heap_.size();
  ready_heap_.push_back(w);
  ++ready_count_;
  ready_capacity_ += w->capacity;
  HeapSiftUp(w->heap_pos);
}

void Scheduler::HeapRemove(Worker* w) {
  const size_t i = w->heap_pos;
  if (i == SIZE_MAX) return;
  w->heap_pos = SIZE_MAX;
  --ready_count_;
  ready_capacity_ -= w->capacity;
  Worker* last = ready_heap_.back();
  ready_heap_.pop_back();
  if (last == w) return;
  ready_heap_[i] = last;
  last->heap_pos = i;
  HeapSiftUp(i);
  HeapSiftDown(last->heap_pos);
}

void Scheduler::HeapFix(Worker* w) {
  if (w->heap_pos == SIZE_MAX) return;
  HeapSiftUp(w->heap_pos);
  HeapSiftDown(w->heap_pos);
}

}  // namespace procpool::internal
