#include "tests/pool/internal/scheduler_sim.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "pool/internal/chunk_state.h"
#include "pool/internal/claim_table.h"
#include "pool/internal/scheduler.h"
#include "pool/internal/task_state.h"
#include "pool/internal/wire.h"
#include "tasks/serialize.h"

namespace procpool::internal::sim {
namespace {

// What an item does when a worker runs it.
// kOverLimit: crosses a hard limit (PoolOptions::limits) while it runs; its
// worker stops itself (processes only).
enum class Script { kOk, kThrow, kCrash, kCrashFirst, kHang, kStopSelf, kDieAfterReturn,
                    kOverLimit };

const char* ScriptName(Script s) {
  switch (s) {
    case Script::kOk: return "ok";
    case Script::kThrow: return "throw";
    case Script::kCrash: return "crash";
    case Script::kCrashFirst: return "crash-first";
    case Script::kHang: return "hang";
    case Script::kStopSelf: return "stop-self";
    case Script::kDieAfterReturn: return "die-after-return";
    case Script::kOverLimit: return "over-limit";
  }
  return "?";
}

struct Item {
  Script script = Script::kOk;
  absl::Duration duration;
  int crash_runs = 0;  // kCrashFirst: its first crash_runs runs crash
  size_t task = 0;     // index in Sim::tasks_
  // What happened to it.
  int runs = 0;
  int crashed = 0;         // runs that crashed (kCrashFirst)
  int limit_deaths = 0;    // its worker stopped itself at a limit under it
  int deaths_blamable = 0; // its worker died while running it, or after it
                           // returned (not stopped by the pool)
};

struct Task {
  std::shared_ptr<TaskState> state;
  bool chunk = false;
  size_t first = 0;  // index of its first item in Sim::items_
  size_t size = 1;
  bool after_shutdown = false;
  bool cancel_true = false;
  bool stop_asked = false;
  bool held_by_lost_agent = false;
  int resolutions = 0;
};

struct SimCall {
  std::shared_ptr<TaskState> task;
  uint64_t seq = 0;
  std::vector<size_t> positions;  // the items it carries (chunk positions)
};

struct SimWorker {
  WorkerId id = 0;
  int pid = 0;
  std::unique_ptr<std::atomic<uint64_t>[]> words;
  std::unique_ptr<ClaimTable> claims;
  enum class Start { kNormal, kFail, kCrash, kHang } start = Start::kNormal;
  bool ready = false, dead = false, closed = false;
  bool exit_reported = false;  // the scheduler was told (OnExit)
  size_t slot = 0;
  bool hung_up = false;  // the scheduler was told its socket closed (OnDisconnected)
  bool signalled = false;  // the scheduler stopped it (kSignal)
  std::deque<SimCall> mailbox;
  bool busy = false;
  SimCall cur;
  size_t k = 0;
  uint64_t running_task = 0;
  uint32_t running_item = 0;
  absl::Time running_since;
  bool stopped_self = false;
  bool doomed = false;  // a task closed its socket: it dies at its next flush
  std::string limit;    // a hard limit its task crossed (WorkerExit::limit)
  std::string chunk_result;
  size_t chunk_start = 0;
  uint32_t answered = 0;
  uint64_t tasks_done = 0;
  uint64_t gen = 0;
  absl::Time socket_free_at;
  RetireReason retire = RetireReason::kNone;
  // Agents (SchedulerConfig::Kind::kAgent): how many calls run at once,
  // those waiting for a turn, those running (by task id: cancelled?), and
  // whether it went silent (lost).
  size_t capacity = 1;
  std::deque<SimCall> backlog;
  std::map<uint64_t, bool> jobs;
  bool mute = false;
};

// SCHEDULER_SIM_TRACE=1 prints every action and worker event.
bool Tracing() {
  static const bool on = std::getenv("SCHEDULER_SIM_TRACE") != nullptr;
  return on;
}

class Sim {
 public:
  Sim(uint64_t seed, bool agents) : rng_(seed), seed_(seed), agents_(agents) {}
  Result Run();

 private:
  uint64_t R(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  bool P(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  absl::Duration Ms(double lo, double hi) {
    return absl::Microseconds(
        static_cast<int64_t>(1000 * std::uniform_real_distribution<double>(lo, hi)(rng_)));
  }
  void Trace(const std::string& what) {
    if (Tracing()) {
      std::printf("[%9.3f ms] %s\n", absl::ToDoubleMilliseconds(now_ - t0_), what.c_str());
    }
  }
  void At(absl::Time t, std::function<void()> fn) {
    events_.emplace(std::make_pair(std::max(t, now_), rng_()), std::move(fn));
  }
  void Fail(const std::string& why) {
    if (result_.ok) {
      result_.ok = false;
      result_.failure = absl::StrCat("step ", result_.steps, ", t=",
                                     absl::FormatDuration(now_ - t0_), ": ", why);
    }
  }

  void MakeScenario();
  void SubmitTask(size_t task);
  void Apply();
  void Control(const Action& a);
  void OnSend(const SendAction& a);
  void OnResolve(const ResolveAction& a);
  SimWorker* W(WorkerId id) {
    auto it = workers_.find(id);
    return it == workers_.end() ? nullptr : it->second.get();
  }
  void Step(SimWorker& w);
  void StartItem(SimWorker& w);
  void EndItem(SimWorker& w);
  void Flush(SimWorker& w, std::vector<Answer> answers);
  void Die(SimWorker& w, std::string how, bool killed, bool blame, bool exited_zero = false);
  void Exit(SimWorker& w, bool retired);
  size_t ItemIndex(const SimCall& c, size_t k) {
    return tasks_[task_index_.at(c.task.get())].first + c.positions[k];
  }
  // Agents.
  void AgentSpawned(SimWorker& a);
  void AgentPump(SimWorker& a);
  absl::Status AgentOutcome(const Item& it, const TaskPolicy& policy, absl::Duration* took);
  void AgentLost(SimWorker& a, const std::string& how);
  void Heartbeat(WorkerId id);
  void CheckOutcome(Task& t);
  void CheckItem(Task& t, size_t position, const absl::Status& s);

  std::mt19937_64 rng_;
  const uint64_t seed_;
  const bool agents_;
  Result result_;
  absl::Time t0_ = absl::FromUnixSeconds(1'000'000);
  absl::Time now_ = t0_;
  std::multimap<std::pair<absl::Time, uint64_t>, std::function<void()>> events_;
  std::unique_ptr<Scheduler> sched_;
  SchedulerConfig config_;
  Actions actions_;
  std::map<WorkerId, std::unique_ptr<SimWorker>> workers_;
  std::vector<Task> tasks_;
  // Tasks a caller submitted that wait for the next flush, as in a
  // driver's intake, to reach the scheduler together (SubmitMany).
  std::vector<size_t> intake_;
  std::vector<Item> items_;
  std::map<const TaskState*, size_t> task_index_;
  int next_pid_ = 100;
  uint64_t spawns_ = 0;
  double start_trouble_ = 0;  // chance that a replacement fails to start
  int ending_ = 0;
  bool shutdown_called_ = false;
  bool cancel_pending_called_ = false;
  bool deadline_passed_ = false;
  bool terminated_ = false;
  bool started_ = false;
  size_t agents_lost_ = 0;
};

// ---------------------------------------------------------------------------
// The scenario

void Sim::MakeScenario() {
  config_.kind = agents_ ? SchedulerConfig::Kind::kAgent : SchedulerConfig::Kind::kProcess;
  config_.slots = 1 + R(4);
  if (agents_) {
    config_.liveness_timeout = Ms(30, 80);
    config_.requeue_on_loss = P(0.7);
  }
  config_.max_tasks_per_child = !agents_ && P(0.2) ? 1 + R(4) : 0;
  config_.on_worker_death = !agents_ && P(0.1) ? WorkerDeathPolicy::kBreakPool
                                               : WorkerDeathPolicy::kReplaceWorker;
  config_.start_timeout = Ms(20, 200);
  config_.kill_grace = Ms(5, 50);
  config_.close_grace = Ms(50, 200);
  config_.max_start_failures = 3 + static_cast<int>(R(3));
  start_trouble_ = !agents_ && P(0.15) ? 0.4 : 0;
  // 0: drain at the end; 1: Shutdown(cancel_pending) midway; 2: Shutdown
  // with a deadline midway; 3: Terminate midway; 4: Shutdown(wait=false).
  ending_ = static_cast<int>(R(5));
  const bool hangs_end = ending_ == 2 || ending_ == 3;

  const size_t n = 1 + R(40);
  for (size_t i = 0; i < n; ++i) {
    Task t;
    t.chunk = P(0.3);
    t.size = t.chunk ? 1 + R(8) : 1;
    t.first = items_.size();
    TaskPolicy policy;
    policy.retries = static_cast<int>(R(4));
    const bool timed = P(0.3);
    if (timed) policy.timeout = Ms(10, 30);
    for (size_t k = 0; k < t.size; ++k) {
      Item it;
      it.task = tasks_.size();
      it.duration = Ms(0.01, 3);
      const int r = static_cast<int>(R(100));
      if (r < 70) {
        it.script = Script::kOk;
      } else if (r < 75) {
        it.script = Script::kThrow;
      } else if (r < 80) {
        it.script = Script::kCrash;
      } else if (r < 88) {
        it.script = Script::kCrashFirst;
        it.crash_runs = 1 + static_cast<int>(R(3));
      } else if (r < 92) {
        it.script = Script::kDieAfterReturn;
        if (!agents_ && P(0.3)) it.script = Script::kOverLimit;
      } else if (r < 96 && (timed || (hangs_end && !agents_))) {
        it.script = P(0.5) ? Script::kHang : Script::kStopSelf;
      } else if (timed) {
        it.script = Script::kOk;  // slow: well past its limit
        it.duration = policy.timeout * 2 + Ms(1, 20);
      }
      if (timed && it.script != Script::kOk) it.duration = std::min(it.duration, policy.timeout / 2);
      if (timed && it.script == Script::kOk && it.duration < policy.timeout) {
        it.duration = std::min(it.duration, policy.timeout / 2);
      }
      items_.push_back(it);
    }
    if (t.chunk) {
      auto chunk = std::make_shared<ChunkState>(0, t.first, "t");
      for (size_t k = 0; k < t.size; ++k) chunk->AddEncodedItem("a");
      t.state = chunk;
    } else {
      t.state = std::make_shared<TaskState>(0, t.first);
      t.state->args() = "a";
    }
    t.state->mutable_policy() = policy;
    task_index_[t.state.get()] = tasks_.size();
    tasks_.push_back(std::move(t));
  }
}

void Sim::SubmitTask(size_t i) {
  Task& t = tasks_[i];
  Trace(absl::StrCat("submit task ", i, t.chunk ? absl::StrCat(" chunk of ", t.size) : "",
                     " timeout ", absl::FormatDuration(t.state->policy().timeout),
                     " retries ", t.state->policy().retries));
  if (P(0.5)) {
    t.after_shutdown = shutdown_called_ || terminated_;
    sched_->Submit(t.state, now_, actions_);
    Apply();
    return;
  }
  // Through the intake: with whatever else arrives before the flush.
  if (intake_.empty()) {
    At(now_ + Ms(0, 1), [this] {
      Trace(absl::StrCat("flush the intake: ", intake_.size(), " tasks"));
      std::vector<std::shared_ptr<TaskState>> batch;
      for (size_t k : intake_) {
        tasks_[k].after_shutdown = shutdown_called_ || terminated_;
        batch.push_back(tasks_[k].state);
      }
      intake_.clear();
      sched_->SubmitMany(batch, now_, actions_);
      Apply();
    });
  }
  intake_.push_back(i);
}

// ---------------------------------------------------------------------------
// The driver's part: carrying out actions

void Sim::Apply() {
  while (!actions_.empty()) {
    Actions actions;
    std::swap(actions, actions_);
    for (const SendAction& a : actions.sends) {
      Trace(absl::StrCat("  send worker=", a.worker, " seq=", a.seq, " items=", a.items,
                         " task=", task_index_.count(a.call) ? task_index_[a.call] : 999999,
                         " id=", a.call->id()));
      OnSend(a);
    }
    for (const Action& a : actions.controls) Control(a);
    for (const ResolveAction& a : actions.resolves) {
      Trace(absl::StrCat("  resolve task=",
                         task_index_.count(a.task.get()) ? task_index_[a.task.get()] : 999999,
                         " ", a.status.ToString()));
      OnResolve(a);
    }
  }
}

void Sim::Control(const Action& a) {
  if (Tracing()) {
    static const char* kNames[] = {"spawn", "close", "signal", "cancel-remote", "slot-note"};
    Trace(absl::StrCat("  ", kNames[static_cast<int>(a.kind)], " worker=", a.worker,
                       " slot=", a.slot, a.kind == Action::Kind::kSignal
                                             ? absl::StrCat(" sig=", a.signal)
                                             : "",
                       " ", a.text));
  }
  switch (a.kind) {
    case Action::Kind::kSpawn: {
      if (agents_) {
        auto w = std::make_unique<SimWorker>();
        w->id = a.worker;
        w->pid = next_pid_++;
        w->capacity = 1 + R(3);
        sched_->OnSpawned(w->id, w->pid, nullptr);
        SimWorker* raw = w.get();
        workers_[a.worker] = std::move(w);
        At(now_ + Ms(0.5, 5), [this, raw] { AgentSpawned(*raw); });
        break;
      }
      // A worker whose socket closed is its slot's until it exits (or the
      // pool stops it): what it ran fails before a replacement starts.
      for (const auto& [id, other] : workers_) {
        if (other->slot == a.slot && other->hung_up && !other->exit_reported &&
            !other->signalled) {
          Fail(absl::StrCat("slot ", a.slot, " respawned while its worker ", id,
                            " had hung up but not exited"));
        }
      }
      auto w = std::make_unique<SimWorker>();
      w->id = a.worker;
      w->pid = next_pid_++;
      w->slot = a.slot;
      w->words.reset(new std::atomic<uint64_t>[kClaimSlots]());
      w->claims = std::make_unique<ClaimTable>(w->words.get(), nullptr);
      if (spawns_++ >= config_.slots && P(start_trouble_)) {
        w->start = static_cast<SimWorker::Start>(1 + R(3));
      }
      sched_->OnSpawned(w->id, w->pid, w->claims.get());
      SimWorker* raw = w.get();
      workers_[a.worker] = std::move(w);
      At(now_ + Ms(0.5, 5), [this, raw] {
        if (raw->dead) return;
        switch (raw->start) {
          case SimWorker::Start::kNormal:
            raw->ready = true;
            sched_->OnReady(raw->id, 1, now_, actions_);
            Apply();
            Step(*raw);
            break;
          case SimWorker::Start::kFail: {
            raw->dead = raw->exit_reported = true;
            WorkerExit exit;
            exit.how = "exited with code 1";
            exit.hello_error = absl::InvalidArgumentError("a plugin would not load");
            sched_->OnExit(raw->id, exit, now_, actions_);
            Apply();
            break;
          }
          case SimWorker::Start::kCrash:
            Die(*raw, "killed by signal 11 (SIGSEGV)", false, false);
            break;
          case SimWorker::Start::kHang:
            break;  // until the pool kills it
        }
      });
      break;
    }
    case Action::Kind::kClose: {
      SimWorker* w = W(a.worker);
      if (w == nullptr || w->dead) break;
      if (agents_) {
        // It stops its pool and says so (MPI: kTagStopped).
        At(now_ + Ms(0.1, 2), [this, w] {
          if (w->dead || w->mute) return;
          w->dead = w->exit_reported = true;
          WorkerExit exit;
          exit.how = "stopped its pool";
          exit.exited_zero = true;
          sched_->OnExit(w->id, exit, now_, actions_);
          Apply();
        });
        break;
      }
      w->closed = true;
      if (!w->ready) {
        At(now_ + Ms(0.1, 1), [this, w] {
          if (!w->dead) Die(*w, "exited with code 0", false, false, true);
        });
      } else if (!w->busy) {
        At(now_, [this, w] { Step(*w); });
      }
      break;
    }
    case Action::Kind::kSignal: {
      SimWorker* w = W(a.worker);
      if (w != nullptr) w->signalled = true;
      if (w == nullptr || w->dead) break;
      if (agents_) {
        // The driver gives up on the agent at once.
        AgentLost(*w, absl::StrCat("lost: ", a.text));
        break;
      }
      if (a.signal == SIGTERM && w->stopped_self) break;  // stopped: only SIGKILL
      const bool kill = a.signal == SIGKILL;
      At(now_ + Ms(0.01, 0.5), [this, w, kill] {
        if (!w->dead) {
          Die(*w, kill ? "killed by signal 9 (SIGKILL)" : "killed by signal 15 (SIGTERM)",
              true, false);
        }
      });
      break;
    }
    case Action::Kind::kCancelRemote: {
      SimWorker* w = W(a.worker);
      if (w == nullptr) break;
      auto job = w->jobs.find(a.task->id());
      if (job != w->jobs.end()) job->second = true;  // its answer is dropped
      for (auto it = w->backlog.begin(); it != w->backlog.end(); ++it) {
        if (it->task == a.task) {
          w->backlog.erase(it);
          break;
        }
      }
      break;
    }
    case Action::Kind::kSlotNote:
      break;
  }
}

void Sim::OnSend(const SendAction& a) {
  SimWorker* w = W(a.worker);
  auto it = task_index_.find(a.call);
  if (it == task_index_.end()) return Fail("sent a task the simulation never made");
  Task& t = tasks_[it->second];
  if (t.state->Done()) return Fail("sent a task that was already resolved");
  if (w == nullptr || w->dead) return;  // lost in the socket; its exit tells
  if (!w->ready) return Fail("sent a call to a worker that is not ready");
  if (agents_ && a.items != 0) return Fail("sent an agent part of a chunk");
  SimCall c;
  c.task = t.state;
  c.seq = a.seq;
  if (ChunkState* chunk = t.state->AsChunk()) {
    size_t n = chunk->unanswered();
    if (a.items > 0) n = std::min(n, a.items);
    for (size_t k = 0; k < n; ++k) c.positions.push_back(chunk->UnansweredPosition(k));
  } else {
    c.positions.push_back(0);
  }
  if (agents_) {
    w->backlog.push_back(std::move(c));
    return AgentPump(*w);
  }
  w->mailbox.push_back(std::move(c));
  if (!w->busy) At(now_, [this, w] { Step(*w); });
}

// ---------------------------------------------------------------------------
// Agents: each runs up to `capacity` calls at once, decides their items'
// outcomes as its own local pool would (time limits and retries there),
// answers in completion order, and proves it is alive with heartbeats.

void Sim::AgentSpawned(SimWorker& a) {
  if (a.dead) return;
  a.ready = true;
  sched_->OnReady(a.id, a.capacity, now_, actions_);
  Apply();
  Heartbeat(a.id);
}

void Sim::Heartbeat(WorkerId id) {
  SimWorker* a = W(id);
  if (a == nullptr || a->dead || a->mute) return;
  sched_->OnHeard(id, now_);
  At(now_ + Ms(5, 10), [this, id] { Heartbeat(id); });
}

absl::Status Sim::AgentOutcome(const Item& it, const TaskPolicy& policy,
                               absl::Duration* took) {
  const bool timed = policy.timeout != absl::InfiniteDuration();
  *took = it.duration;
  switch (it.script) {
    case Script::kOk:
      if (timed && it.duration > policy.timeout) {
        *took = policy.timeout;
        return absl::ResourceExhaustedError("ran past its time limit");
      }
      return absl::OkStatus();
    case Script::kThrow:
      return absl::UnknownError("raised std::runtime_error: boom");
    case Script::kCrashFirst:
      if (it.crash_runs <= policy.retries) return absl::OkStatus();
      return absl::AbortedError("poison task");
    case Script::kCrash:
    case Script::kDieAfterReturn:
      return absl::AbortedError("killed its worker");
    case Script::kOverLimit:  // never given to agents
      return absl::ResourceExhaustedError("crossed a limit");
    case Script::kHang:
    case Script::kStopSelf:
      *took = policy.timeout;
      return absl::ResourceExhaustedError("ran past its time limit");
  }
  return absl::InternalError("?");
}

void Sim::AgentPump(SimWorker& a) {
  while (!a.dead && !a.mute && a.jobs.size() < a.capacity && !a.backlog.empty()) {
    SimCall c = std::move(a.backlog.front());
    a.backlog.pop_front();
    const uint64_t id = c.task->id();
    a.jobs[id] = false;
    const Task& t = tasks_[task_index_.at(c.task.get())];
    absl::Duration total;
    std::vector<absl::Status> outcomes;
    for (size_t k = 0; k < c.positions.size(); ++k) {
      Item& it = items_[ItemIndex(c, k)];
      if (t.cancel_true) Fail(absl::StrCat("task ", it.task, ": cancelled, yet it started"));
      ++it.runs;
      absl::Duration took;
      outcomes.push_back(AgentOutcome(it, t.state->policy(), &took));
      total += took;
    }
    Answer ans;
    ans.id = id;
    ans.run_ns = 1000;
    if (c.task->AsChunk() != nullptr) {
      std::string payload;
      const size_t start = BeginChunkResult(&payload);
      for (const absl::Status& s : outcomes) {
        const size_t at = BeginChunkAnswer(&payload);
        payload += s.ok() ? std::string("r") : EncodeStatus(s);
        EndChunkAnswer(&payload, at,
                       static_cast<uint8_t>(s.ok() ? ResultCode::kOk : ResultCode::kStatus));
      }
      EndChunkResult(&payload, start, static_cast<uint32_t>(outcomes.size()));
      ans.code = static_cast<uint8_t>(ResultCode::kOk);
      ans.bytes = ResultBytes(std::move(payload));
    } else if (outcomes[0].ok()) {
      ans.code = static_cast<uint8_t>(ResultCode::kOk);
      ans.bytes = ResultBytes(std::string("r"));
    } else {
      ans.code = static_cast<uint8_t>(ResultCode::kStatus);
      ans.bytes = ResultBytes(EncodeStatus(outcomes[0]));
    }
    auto shared = std::make_shared<Answer>(std::move(ans));
    SimWorker* self = &a;
    At(now_ + total + Ms(0.01, 0.5), [this, self, id, shared] {
      if (self->dead || self->mute) return;
      const bool cancelled = self->jobs[id];
      self->jobs.erase(id);
      if (!cancelled) {
        std::vector<Answer> one;
        one.push_back(std::move(*shared));
        sched_->OnAnswers(self->id, one, now_, actions_);
        Apply();
      }
      AgentPump(*self);
    });
  }
}

void Sim::AgentLost(SimWorker& a, const std::string& how) {
  if (a.dead) return;
  a.dead = a.exit_reported = true;
  ++agents_lost_;
  for (const auto& [id, cancelled] : a.jobs) {
    for (Task& t : tasks_) {
      if (t.state->id() == id) t.held_by_lost_agent = true;
    }
  }
  for (const SimCall& c : a.backlog) tasks_[task_index_.at(c.task.get())].held_by_lost_agent = true;
  WorkerExit exit;
  exit.how = how;
  exit.killed = true;
  sched_->OnExit(a.id, exit, now_, actions_);
  Apply();
}

void Sim::OnResolve(const ResolveAction& a) {
  auto it = task_index_.find(a.task.get());
  if (it == task_index_.end()) return Fail("resolved a task the simulation never made");
  Task& t = tasks_[it->second];
  if (t.state->Done()) {
    return Fail(absl::StrCat("task #", it->second, " resolved twice (", a.status.ToString(),
                             " after ", t.state->status().ToString(), ")"));
  }
  ++t.resolutions;
  t.state->Complete(a.status, ResultBytes(std::string(a.bytes.view())));
  ++result_.resolved;
  CheckOutcome(t);
}

// ---------------------------------------------------------------------------
// The workers

void Sim::Step(SimWorker& w) {
  if (w.dead || w.busy || !w.ready) return;
  std::vector<Answer> skipped;
  while (!w.mailbox.empty()) {
    SimCall c = std::move(w.mailbox.front());
    w.mailbox.pop_front();
    if (!w.claims->TryStart(c.seq)) {
      Answer a;
      a.id = c.task->id();
      a.code = static_cast<uint8_t>(ResultCode::kSkipped);
      skipped.push_back(std::move(a));
      continue;
    }
    if (!skipped.empty()) Flush(w, std::move(skipped));
    w.busy = true;
    w.cur = std::move(c);
    w.k = 0;
    w.answered = 0;
    w.chunk_result.clear();
    if (w.cur.task->AsChunk() != nullptr) w.chunk_start = BeginChunkResult(&w.chunk_result);
    StartItem(w);
    return;
  }
  if (!skipped.empty()) Flush(w, std::move(skipped));
  if (w.closed && !w.dead) Exit(w, false);
}

void Sim::StartItem(SimWorker& w) {
  const size_t index = ItemIndex(w.cur, w.k);
  Item& it = items_[index];
  Trace(absl::StrCat("worker ", w.id, " starts item ", index, " (", ScriptName(it.script),
                     ") of task ", it.task, " id ", w.cur.task->id(), " seq ", w.cur.seq,
                     " k ", w.k));
  Task& t = tasks_[it.task];
  if (t.cancel_true) {
    Fail(absl::StrCat("task #", it.task, ": Cancel() returned true, yet it started"));
  }
  if (it.limit_deaths > 0) {
    Fail(absl::StrCat("item ", index, " of task #", it.task,
                      " crossed a hard limit, yet it runs again"));
  }
  ++it.runs;
  w.running_task = w.cur.task->id();
  w.running_item = static_cast<uint32_t>(w.k);
  w.running_since = now_;
  const uint64_t gen = ++w.gen;
  if (it.script == Script::kHang) return;
  if (it.script == Script::kStopSelf) {
    w.stopped_self = true;
    return;
  }
  At(now_ + it.duration, [this, &w, gen] {
    if (!w.dead && w.gen == gen) EndItem(w);
  });
}

void Sim::EndItem(SimWorker& w) {
  const size_t index = ItemIndex(w.cur, w.k);
  Item& it = items_[index];
  const bool crash = it.script == Script::kCrash ||
                     (it.script == Script::kCrashFirst && it.crashed < it.crash_runs);
  if (crash) {
    ++it.crashed;
    return Die(w, "killed by signal 11 (SIGSEGV)", false, true);
  }
  if (it.script == Script::kOverLimit) {
    ++it.limit_deaths;
    w.limit = "crossed its memory limit of 64 MiB (simulated)";
    return Die(w, "exited with code 97", false, false);
  }
  uint8_t code = static_cast<uint8_t>(ResultCode::kOk);
  std::string payload = "r";
  if (it.script == Script::kThrow) {
    code = static_cast<uint8_t>(ResultCode::kException);
    payload.clear();
    internal::AppendArchive(&payload, RemoteException{"std::runtime_error", "boom"});
  }
  if (it.script == Script::kDieAfterReturn) {
    w.doomed = true;
    ++it.deaths_blamable;
  }
  ++w.tasks_done;
  if (config_.max_tasks_per_child > 0 && w.tasks_done >= config_.max_tasks_per_child) {
    w.retire = RetireReason::kMaxTasks;
  }
  ChunkState* chunk = w.cur.task->AsChunk();
  if (chunk != nullptr) {
    const size_t at = BeginChunkAnswer(&w.chunk_result);
    w.chunk_result += payload;
    EndChunkAnswer(&w.chunk_result, at, code);
    ++w.answered;
    if (w.k + 1 < w.cur.positions.size() && w.retire == RetireReason::kNone) {
      ++w.k;
      return StartItem(w);
    }
    EndChunkResult(&w.chunk_result, w.chunk_start, w.answered);
    code = static_cast<uint8_t>(ResultCode::kOk);
    payload = std::move(w.chunk_result);
  }
  w.running_task = 0;
  w.running_item = 0;
  w.busy = false;
  Answer a;
  a.id = w.cur.task->id();
  a.code = code;
  a.run_ns = 1000;
  a.bytes = ResultBytes(std::move(payload));
  w.cur = SimCall();
  std::vector<Answer> answers;
  answers.push_back(std::move(a));
  if (w.doomed) {
    // Its socket is closed: the answer never leaves, the write fails.
    return Die(w, "exited with code 2", false, false);
  }
  Flush(w, std::move(answers));
  if (w.retire != RetireReason::kNone) return Exit(w, true);
  Step(w);
}

void Sim::Flush(SimWorker& w, std::vector<Answer> answers) {
  // A socket delivers in order: each message strictly after the last.
  const absl::Time at =
      std::max(now_ + Ms(0, 0.5), w.socket_free_at + absl::Nanoseconds(1));
  w.socket_free_at = at;
  auto shared = std::make_shared<std::vector<Answer>>(std::move(answers));
  const WorkerId id = w.id;
  At(at, [this, id, shared] {
    if (Tracing()) {
      std::string ids;
      for (const Answer& a : *shared) absl::StrAppend(&ids, " ", a.id, "/", static_cast<int>(a.code));
      Trace(absl::StrCat("worker ", id, " answers", ids));
    }
    sched_->OnAnswers(id, *shared, now_, actions_);
    Apply();
  });
}

void Sim::Die(SimWorker& w, std::string how, bool killed, bool blame, bool exited_zero) {
  if (w.dead) return;
  w.dead = true;
  ++w.gen;
  WorkerExit exit;
  exit.how = std::move(how);
  exit.killed = killed;
  exit.exited_zero = exited_zero;
  exit.running_task = w.running_task;
  exit.running_item = w.running_item;
  exit.tasks_done = w.tasks_done;
  exit.retired = exited_zero ? w.retire : RetireReason::kNone;
  exit.limit = w.limit;
  if (blame && w.running_task != 0) ++items_[ItemIndex(w.cur, w.k)].deaths_blamable;
  // The pool reads what is in the socket before it handles the death.
  const absl::Time at =
      std::max(now_ + Ms(0.01, 0.5), w.socket_free_at + absl::Nanoseconds(1));
  const WorkerId id = w.id;
  // Often its socket reads EOF first, a moment before it can be reaped.
  if (!agents_ && P(0.5)) {
    At(now_ + Ms(0.001, 0.01), [this, id] {
      auto it = workers_.find(id);
      if (it == workers_.end() || it->second->exit_reported) return;
      it->second->hung_up = true;
      sched_->OnDisconnected(id, now_, actions_);
      Apply();
    });
  }
  At(at, [this, id, exit] {
    Trace(absl::StrCat("worker ", id, " exit: ", exit.how, " running ", exit.running_task,
                       "/", exit.running_item));
    if (auto it = workers_.find(id); it != workers_.end()) it->second->exit_reported = true;
    sched_->OnExit(id, exit, now_, actions_);
    Apply();
  });
}

void Sim::Exit(SimWorker& w, bool retired) {
  if (!retired) w.retire = RetireReason::kNone;
  Die(w, "exited with code 0", false, false, true);
}

// ---------------------------------------------------------------------------
// The guarantees

void Sim::CheckItem(Task& t, size_t position, const absl::Status& s) {
  const size_t index = t.first + position;
  const Item& it = items_[index];
  const TaskPolicy& policy = t.state->policy();
  const auto bad = [&](const std::string& why) {
    Fail(absl::StrCat("item ", index, " of task #", it.task, " (", ScriptName(it.script),
                      ", ", it.runs, " runs, ", it.deaths_blamable,
                      " deaths it may be blamed for, retries ", policy.retries,
                      ") resolved ", s.ToString(), ": ", why));
  };
  const bool broken_by_crash = config_.on_worker_death == WorkerDeathPolicy::kBreakPool;
  switch (s.code()) {
    case absl::StatusCode::kOk:
      if (it.script != Script::kOk && it.script != Script::kCrashFirst) {
        return bad("succeeded, but its script never succeeds");
      }
      if (it.runs == 0) return bad("succeeded without running");
      if (agents_ && it.script == Script::kCrashFirst && it.crash_runs > policy.retries) {
        return bad("succeeded after its retries ran out");
      }
      if (it.deaths_blamable > policy.retries) return bad("succeeded after its retries ran out");
      if (policy.timeout != absl::InfiniteDuration() && it.duration > policy.timeout) {
        return bad("succeeded, though it runs past its time limit");
      }
      return;
    case absl::StatusCode::kUnknown:
      if (it.script != Script::kThrow) return bad("an exception it never throws");
      return;
    case absl::StatusCode::kAborted:
      if (broken_by_crash) return;  // kBreakPool fails everything
      if (agents_) {
        const bool deadly = it.script == Script::kCrash || it.script == Script::kDieAfterReturn ||
                            (it.script == Script::kCrashFirst && it.crash_runs > policy.retries);
        if (!deadly && !t.held_by_lost_agent) return bad("a crash it cannot cause");
        return;
      }
      if (it.deaths_blamable < policy.retries + 1) {
        return bad("a crash failure before its retries ran out");
      }
      return;
    case absl::StatusCode::kResourceExhausted:
      if (it.script == Script::kOverLimit) {
        if (it.limit_deaths == 0) return bad("over its limit, but it never crossed it");
        return;
      }
      if (policy.timeout == absl::InfiniteDuration()) return bad("no time limit to exceed");
      if (it.script != Script::kHang && it.script != Script::kStopSelf &&
          it.duration <= policy.timeout) {
        return bad("timed out, though it finishes within its limit");
      }
      return;
    case absl::StatusCode::kCancelled:
      if (t.cancel_true || t.stop_asked || cancel_pending_called_ || deadline_passed_ ||
          terminated_) {
        return;
      }
      return bad("cancelled, but nobody asked");
    case absl::StatusCode::kUnavailable:
      if (agents_) {
        if (agents_lost_ < config_.slots) return bad("the pool broke with agents left");
        return;
      }
      if (start_trouble_ == 0) return bad("the pool broke, but every worker could start");
      return;
    case absl::StatusCode::kFailedPrecondition:
      if (!t.after_shutdown) return bad("refused, but submitted before the shutdown");
      return;
    default:
      return bad("a code the simulation never causes");
  }
}

void Sim::CheckOutcome(Task& t) {
  const absl::Status& s = t.state->status();
  if (ChunkState* chunk = t.state->AsChunk(); chunk != nullptr && s.ok()) {
    for (size_t i = 0; i < t.size; ++i) CheckItem(t, i, chunk->ItemStatus(i));
  } else {
    for (size_t i = 0; i < t.size; ++i) CheckItem(t, i, s);
  }
}

// ---------------------------------------------------------------------------
// The run

Result Sim::Run() {
  MakeScenario();
  result_.tasks = tasks_.size();
  sched_ = std::make_unique<Scheduler>(config_);
  sched_->SetTaskNames({"t"});
  sched_->Start(now_, actions_);
  Apply();

  absl::Time next_observe = absl::InfiniteFuture();
  const absl::Time limit = t0_ + absl::Seconds(600);
  bool scenario_queued = false;
  bool final_shutdown = false;
  while (result_.ok) {
    if (!started_ && sched_->start_state() != Scheduler::StartState::kStarting) {
      started_ = true;
      if (sched_->start_state() == Scheduler::StartState::kFailed) {
        // Create() fails: the pool is torn down.
        terminated_ = true;
        sched_->Terminate(now_, actions_);
        Apply();
      }
    }
    if (started_ && !scenario_queued && sched_->start_state() == Scheduler::StartState::kStarted) {
      scenario_queued = true;
      const absl::Time base = now_;
      for (size_t i = 0; i < tasks_.size(); ++i) {
        const absl::Time at = base + Ms(0, 100);
        At(at, [this, i] { SubmitTask(i); });
        // A caller cancels only a future it has: after submitting.
        if (P(0.15)) {
          At(at + Ms(0, 30) + absl::Nanoseconds(1), [this, i] {
            Task& t = tasks_[i];
            if (t.state->Cancel(absl::CancelledError("cancelled by the caller"))) {
              t.cancel_true = true;
              ++t.resolutions;
              ++result_.resolved;
            }
          });
        } else if (P(0.05)) {
          At(at + Ms(0, 30) + absl::Nanoseconds(1), [this, i] {
            Task& t = tasks_[i];
            t.stop_asked = true;
            if (t.state->Cancel(absl::CancelledError("cancelled by the caller"))) {
              t.cancel_true = true;
              ++t.resolutions;
              ++result_.resolved;
              return;
            }
            if (t.state->id() != 0) sched_->StopTask(t.state->id(), now_, actions_);
            Apply();
          });
        }
      }
      for (uint64_t k = R(3); k > 0; --k) {
        At(base + Ms(0, 150), [this] {
          std::vector<SimWorker*> live;
          for (auto& [id, w] : workers_) {
            if (w->ready && !w->dead && !w->mute) live.push_back(w.get());
          }
          if (live.empty()) return;
          SimWorker* victim = live[R(live.size())];
          if (agents_) {
            victim->mute = true;  // its node is gone: silence
            Trace(absl::StrCat("agent ", victim->id, " goes silent"));
          } else {
            Die(*victim, "killed by signal 9 (SIGKILL)", true, true);
          }
        });
      }
      const absl::Time end_at = base + Ms(0, 150);
      switch (ending_) {
        case 1:
          At(end_at, [this] {
            shutdown_called_ = cancel_pending_called_ = true;
            Trace("shutdown cancel_pending");
            sched_->Shutdown(true, absl::InfiniteFuture(), now_, actions_);
            Apply();
          });
          break;
        case 2: {
          const absl::Duration grace = Ms(0, 50);
          At(end_at, [this, grace] {
            shutdown_called_ = true;
            Trace(absl::StrCat("shutdown deadline +", absl::FormatDuration(grace)));
            sched_->Shutdown(false, now_ + grace, now_, actions_);
            Apply();
            At(now_ + grace, [this] { deadline_passed_ = true; });
          });
          break;
        }
        case 3:
          At(end_at, [this] {
            terminated_ = true;
            Trace("terminate");
            sched_->Terminate(now_, actions_);
            Apply();
          });
          break;
        case 4:
          At(end_at, [this] {
            shutdown_called_ = true;
            Trace("shutdown");
            sched_->Shutdown(false, absl::InfiniteFuture(), now_, actions_);
            Apply();
          });
          break;
      }
    }

    // Done when every task is resolved and the pool has drained.
    bool all_resolved = started_;
    if (scenario_queued) {
      for (const Task& t : tasks_) all_resolved = all_resolved && t.state->Done();
    }
    // (Pending events do not matter then: a late cancel, a kill, a
    // heartbeat.)
    // A worker's death the scheduler has not heard of yet (its exit is on
    // its way) is not a lost slot: look once it has.
    bool exits_pending = false;
    for (auto& [id, w] : workers_) exits_pending = exits_pending || (w->dead && !w->exit_reported);
    if (all_resolved && !final_shutdown && !exits_pending) {
      final_shutdown = true;
      if (!agents_ && !sched_->stopping() && !sched_->Drained()) {
        // An idle, running pool has a worker in every slot.
        size_t live = 0;
        for (auto& [id, w] : workers_) live += w->ready && !w->dead ? 1 : 0;
        const bool broken = !sched_->accepting() && !shutdown_called_ && !terminated_;
        if (!broken && sched_->NextWakeup() == absl::InfiniteFuture() &&
            live != config_.slots) {
          Fail(absl::StrCat("idle pool with ", live, " live workers for ", config_.slots,
                            " slots"));
        }
      }
      shutdown_called_ = true;
      sched_->Shutdown(false, absl::InfiniteFuture(), now_, actions_);
      Apply();
    }
    if (final_shutdown && sched_->Drained() && events_.empty()) break;

    if (sched_->WantsObservation()) {
      if (next_observe == absl::InfiniteFuture()) next_observe = now_ + absl::Milliseconds(1);
    } else {
      next_observe = absl::InfiniteFuture();
    }
    const absl::Time next_event =
        events_.empty() ? absl::InfiniteFuture() : events_.begin()->first.first;
    const absl::Time next =
        std::min({next_event, sched_->NextWakeup(), next_observe});
    if (next == absl::InfiniteFuture()) {
      Fail(absl::StrCat("nothing left to happen, yet ",
                        final_shutdown ? "the pool has not drained"
                                       : "some tasks are unresolved"));
      break;
    }
    if (next > limit) {
      Fail("still running after 600 s of simulated time");
      break;
    }
    now_ = next;
    ++result_.steps;
    if (next == next_event) {
      auto node = events_.extract(events_.begin());
      node.mapped()();
    } else if (next == sched_->NextWakeup()) {
      sched_->Tick(now_, actions_);
      Apply();
    } else {
      next_observe = now_ + absl::Milliseconds(1);
      // A dead worker's status page stays readable until its exit is
      // handled, as the real one does.
      for (WorkerId id : sched_->ObservedWorkers()) {
        SimWorker* w = W(id);
        if (w != nullptr) {
          sched_->Observe(id, w->running_task, w->running_item, w->running_since);
        }
      }
    }
  }
  for (size_t i = 0; i < tasks_.size() && result_.ok; ++i) {
    const Task& t = tasks_[i];
    if (t.resolutions != 1 && sched_->start_state() == Scheduler::StartState::kStarted) {
      Fail(absl::StrCat("task #", i, " resolved ", t.resolutions, " times"));
    }
    if (t.cancel_true) {
      // The items it cancelled never ran (a chunk keeps the outcomes of
      // the items that had answered before).
      ChunkState* chunk = t.state->AsChunk();
      for (size_t k = 0; k < t.size; ++k) {
        const bool cancelled =
            chunk == nullptr || absl::IsCancelled(chunk->ItemStatus(k));
        if (cancelled && items_[t.first + k].runs > 0) {
          Fail(absl::StrCat("task #", i, ": Cancel() returned true, yet item ", k, " ran"));
        }
      }
    }
  }
  return result_;
}

}  // namespace

Result Run(uint64_t seed, bool agents) {
  Sim sim(seed, agents);
  Result r = sim.Run();
  if (!r.ok) r.failure = absl::StrCat("seed ", seed, ": ", r.failure);
  return r;
}

}  // namespace procpool::internal::sim
