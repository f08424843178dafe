#include "pool/internal/mpi_agent.h"

#include <limits.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "pool/internal/chunk_state.h"
#include "pool/internal/mpi_transport.h"
#include "pool/internal/local_driver.h"
#include "pool/internal/wire.h"
#include "pool/internal/task_state.h"

namespace procpool::internal {
namespace {

// While tasks run here, MPI is polled at least this often (the agent is
// woken at once when one is done).
constexpr absl::Duration kBusyPoll = absl::Microseconds(50);
// After the last message or answer, MPI is polled without sleeping this
// long: with several agents, each sees a caller's next call only every few
// round trips.
constexpr absl::Duration kIdleSpin = absl::Milliseconds(1);
// With no pool, the agent only waits for the next configuration.
constexpr absl::Duration kNoPoolPoll = absl::Milliseconds(10);
constexpr size_t kMaxResultsBytes = size_t{1} << 20;

std::string HostName() {
  char host[HOST_NAME_MAX + 1] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0) return "?";
  return host;
}

void Log(int rank, const std::string& what) {
  std::string line = absl::StrCat("[procpool mpi agent rank ", rank, "] ", what, "\n");
  ssize_t r = ::write(STDERR_FILENO, line.data(), line.size());
  (void)r;
}

class Agent {
 public:
  Agent(MPI_Comm comm, int rank)
      : rank_(rank),
        where_(absl::StrCat(" [on MPI rank ", rank, " (", HostName(), ", pid ", ::getpid(), ")]")),
        transport_(comm) {}

  int Run() {
    PollBackoff backoff(kIdleSpin);
    while (true) {
      bool activity = false;
      for (int i = 0; i < 64; ++i) {
        absl::StatusOr<std::optional<MpiMessage>> m = transport_.Poll();
        if (!m.ok()) {
          Log(rank_, std::string(m.status().message()));
          StopPool();
          return 1;
        }
        if (!m->has_value()) break;
        activity = true;
        if (!Handle(**m)) {
          StopPool();
          return 0;
        }
      }
      activity = SendResults() || activity;
      const absl::Time now = absl::Now();
      if (pool_ != nullptr) {
        if (now - last_heard_ > agent_timeout_) {
          Log(rank_, absl::StrCat("the front end (rank 0) was silent for ",
                                  absl::FormatDuration(now - last_heard_),
                                  "; stopping the workers and aborting the job"));
          StopPool();
          MPI_Abort(MpiWorld::Get().comm(), 1);
          return 1;
        }
        if (now - last_sent_ >= heartbeat_) {
          Send(kTagHeartbeat, EncodeMpiMessage(epoch_, Heartbeat{}));
        }
      }
      if (activity) {
        backoff.Activity(now);
        continue;
      }
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !done_.empty(); };
      if (pool_ != nullptr && !running_.empty()) {
        // Tasks run here: wait for the first answer to forward (woken at
        // once), polling MPI for more calls at least every kBusyPoll.
        absl::MutexLock l(&mu_);
        mu_.AwaitWithTimeout(absl::Condition(&ready), kBusyPoll);
        continue;
      }
      // Idle: poll MPI without sleeping for a while (the front end's next
      // call often comes within microseconds), then sleep a little
      // (PollBackoff), waking at once when a task is done.
      const absl::Duration wait =
          pool_ == nullptr ? kNoPoolPoll : backoff.Next(now, /*busy=*/false);
      if (wait == absl::ZeroDuration()) {
        std::this_thread::yield();  // the local workers may share this CPU
        continue;
      }
      absl::MutexLock l(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&ready), wait);
    }
  }

 private:
  // False when the front end says the job is over.
  bool Handle(MpiMessage& m) {
    if (m.source != 0) return true;  // only the front end talks to agents
    const uint64_t epoch = MpiMessageEpoch(m.bytes);
    if (m.tag == kTagExit) {
      absl::StatusOr<Heartbeat> exit = DecodeMpiMessage<Heartbeat>(m.bytes, "exit");
      if (exit.ok() && (exit->flags & Heartbeat::kSkipFinalize)) {
        MpiWorld::Get().SetSkipFinalize();
      }
      return false;
    }
    if (m.tag == kTagConfig) {
      StartPool(epoch, m);
      return true;
    }
    if (epoch != epoch_ || pool_ == nullptr) {
      // A late message for a pool that is gone; a stop still gets its answer
      // so the front end is not kept waiting.
      if (m.tag == kTagStop) {
        Send(kTagStopped, EncodeMpiMessage(epoch, Heartbeat{}));
      }
      return true;
    }
    last_heard_ = absl::Now();
    switch (m.tag) {
      case kTagCalls:
        Calls(m);
        break;
      case kTagCancel: {
        absl::StatusOr<std::vector<uint64_t>> ids =
            DecodeMpiMessage<std::vector<uint64_t>>(m.bytes, "cancel");
        if (!ids.ok()) break;
        for (uint64_t id : *ids) {
          auto it = running_.find(id);
          if (it == running_.end()) continue;
          if (!it->second->Cancel(absl::CancelledError("cancelled by the front end"))) {
            it->second->RequestStop();
          }
        }
        break;
      }
      case kTagStop:
        StopPool();
        Send(kTagStopped, EncodeMpiMessage(epoch, Heartbeat{}));
        break;
      default:
        break;  // heartbeat
    }
    return true;
  }

  void StartPool(uint64_t epoch, const MpiMessage& m) {
    StopPool();
    epoch_ = epoch;
    AgentHello hello;
    hello.host = HostName();
    hello.pid = static_cast<int32_t>(::getpid());
    absl::StatusOr<AgentConfig> config = DecodeMpiMessage<AgentConfig>(m.bytes, "config");
    if (!config.ok()) {
      hello.error_code = static_cast<uint32_t>(config.status().code());
      hello.error = std::string(config.status().message());
      Send(kTagHello, EncodeMpiMessage(epoch_, hello));
      return;
    }
    PoolOptions opts;
    opts.plugins = config->plugins;
    opts.worker_path = config->worker_path;
    opts.max_workers = config->max_workers;
    opts.max_tasks_per_child = config->max_tasks_per_child;
    opts.max_worker_rss_bytes = config->max_worker_rss_bytes;
    opts.kill_grace = absl::Nanoseconds(config->kill_grace_ns);
    opts.forward_worker_stderr = config->forward_worker_stderr;
    opts.stderr_tail_lines = config->stderr_tail_lines;
    opts.start_timeout = absl::Nanoseconds(config->start_timeout_ns);
    opts.max_frame_bytes = config->max_frame_bytes;
    opts.initializer.task = config->init_task;
    opts.initializer.fingerprint = config->init_fingerprint;
    opts.initializer.args = config->init_args;
    heartbeat_ = absl::Nanoseconds(config->heartbeat_ns);
    agent_timeout_ = absl::Nanoseconds(config->agent_timeout_ns);
    // Relative plugin paths are resolved here, against this agent's
    // working directory (LocalDriver::Start does it).
    absl::StatusOr<std::unique_ptr<LocalDriver>> pool = LocalDriver::Start(std::move(opts));
    if (!pool.ok()) {
      hello.error_code = static_cast<uint32_t>(pool.status().code());
      hello.error = std::string(pool.status().message());
      Send(kTagHello, EncodeMpiMessage(epoch_, hello));
      return;
    }
    pool_ = *std::move(pool);
    hello.workers = pool_->num_workers();
    for (const TaskInfo& t : pool_->tasks()) {
      hello.tasks.push_back(RemoteTask{t.name, t.plugin, t.fingerprint, t.signature});
    }
    Send(kTagHello, EncodeMpiMessage(epoch_, hello));
    last_heard_ = absl::Now();
  }

  void StopPool() {
    // Terminate cancels what is queued and kills the workers; the callbacks
    // it runs only record ids, dropped below.
    if (pool_ != nullptr) pool_->Terminate();
    pool_.reset();
    running_.clear();
    absl::MutexLock l(&mu_);
    done_.clear();
  }

  void Calls(const MpiMessage& m) {
    absl::StatusOr<std::vector<RemoteCall>> calls =
        DecodeMpiMessage<std::vector<RemoteCall>>(m.bytes, "calls");
    if (!calls.ok()) {
      Log(rank_, std::string(calls.status().message()));
      return;  // the front end's deadline handles the missing answers
    }
    std::vector<std::shared_ptr<TaskState>> batch;
    batch.reserve(calls->size());
    for (RemoteCall& c : *calls) {
      std::shared_ptr<TaskState> t;
      if (c.task & kChunkBit) {
        // A chunk of a map: the local pool runs it as one, so that an item
        // that crashes its worker fails alone there too.
        const uint32_t task = c.task & ~kChunkBit;
        auto chunk = std::make_shared<ChunkState>(
            task, static_cast<size_t>(c.index),
            task < pool_->tasks().size() ? pool_->tasks()[task].name : "?");
        absl::StatusOr<std::vector<std::string_view>> items = SplitChunkItems(c.args);
        if (!items.ok() || items->empty()) {
          RefuseLocally(c.id, absl::DataLossError(absl::StrCat(
                                  "MPI agent rank ", rank_, ": a chunk does not decode: ",
                                  items.ok() ? "no items" : items.status().message())));
          continue;
        }
        for (std::string_view item : *items) chunk->AddEncodedItem(item);
        t = std::move(chunk);
      } else {
        t = std::make_shared<TaskState>(c.task, static_cast<size_t>(c.index));
        t->args() = std::move(c.args);
      }
      TaskPolicy& p = t->mutable_policy();
      p.timeout = c.timeout_ns < 0 ? absl::InfiniteDuration()
                                   : absl::Nanoseconds(c.timeout_ns);
      p.retries = c.retries;
      const uint64_t id = c.id;
      // Runs on the local pool's I/O thread (or here, for a refusal).
      t->OnDone([this, id] { Done(id); });
      running_[id] = t;
      batch.push_back(std::move(t));
    }
    pool_->EnqueueMany(batch);
  }

  // Answers call `id` with `why` without running it.
  void RefuseLocally(uint64_t id, absl::Status why) {
    auto t = std::make_shared<TaskState>(0, 0);
    t->Complete(std::move(why));
    running_[id] = std::move(t);
    Done(id);
  }

  // Task `id` finished (on the local pool's I/O thread, or here).
  void Done(uint64_t id) {
    absl::MutexLock l(&mu_);
    done_.push_back(id);
    has_done_.store(true, std::memory_order_release);
  }

  // `status` with the rank that saw it, as a kStatus answer's bytes.
  std::string EncodeHere(const absl::Status& status) const {
    absl::Status here(status.code(), absl::StrCat(status.message(), where_));
    status.ForEachPayload([&here](absl::string_view key, const absl::Cord& value) {
      here.SetPayload(key, value);
    });
    return EncodeStatus(here);
  }

  // Sends what finished; true if anything was sent. Each answer is what a
  // worker's would be (wire.h): the result's archive (kOk), a status
  // naming this rank (kStatus), or for a chunk a chunk result with every
  // item's outcome in order.
  bool SendResults() {
    // Checked without the lock: this runs at every poll.
    if (!has_done_.load(std::memory_order_acquire)) return false;
    has_done_.store(false, std::memory_order_relaxed);
    std::vector<uint64_t> ids;
    {
      absl::MutexLock l(&mu_);
      ids.swap(done_);
    }
    if (ids.empty()) return false;
    RemoteResults out;
    const uint64_t avg = AverageTaskNs();
    size_t bytes = 0;
    for (uint64_t id : ids) {
      auto node = running_.extract(id);
      if (node.empty()) continue;
      TaskState& t = *node.mapped();
      RemoteResult r;
      r.id = id;
      r.code = static_cast<uint8_t>(ResultCode::kOk);
      r.run_ns = avg;
      if (ChunkState* chunk = t.AsChunk()) {
        r.run_ns = avg * chunk->size();
        const size_t result = BeginChunkResult(&r.payload);
        for (size_t i = 0; i < chunk->size(); ++i) {
          const size_t answer = BeginChunkAnswer(&r.payload);
          absl::Status item = chunk->ItemStatus(i);
          if (item.ok()) {
            r.payload.append(chunk->ItemBytes(i));
            EndChunkAnswer(&r.payload, answer, static_cast<uint8_t>(ResultCode::kOk));
          } else {
            r.payload.append(EncodeHere(item));
            EndChunkAnswer(&r.payload, answer, static_cast<uint8_t>(ResultCode::kStatus));
          }
        }
        EndChunkResult(&r.payload, result, static_cast<uint32_t>(chunk->size()));
      } else if (t.status().ok()) {
        r.payload = t.payload();
      } else {
        r.code = static_cast<uint8_t>(ResultCode::kStatus);
        r.payload = EncodeHere(t.status());
      }
      bytes += r.payload.size() + 32;
      out.results.push_back(std::move(r));
      if (bytes >= kMaxResultsBytes) {
        Send(kTagResults, EncodeMpiMessage(epoch_, out));
        out.results.clear();
        bytes = 0;
      }
    }
    if (!out.results.empty()) Send(kTagResults, EncodeMpiMessage(epoch_, out));
    return true;
  }

  // The local workers' average run time per task, as their answers report
  // it to the local pool's scheduler.
  uint64_t AverageTaskNs() const { return pool_ != nullptr ? pool_->avg_task_ns() : 0; }

  void Send(int tag, std::string bytes) {
    absl::Status s = transport_.Send(0, tag, std::move(bytes));
    if (!s.ok()) Log(rank_, std::string(s.message()));
    last_sent_ = absl::Now();
  }

  const int rank_;
  const std::string where_;  // " [on MPI rank N (host, pid P)]"
  MpiTransport transport_;
  uint64_t epoch_ = 0;
  absl::Duration heartbeat_ = absl::Milliseconds(200);
  absl::Duration agent_timeout_ = absl::Seconds(10);
  absl::Time last_heard_;
  absl::Time last_sent_;
  // Ids of the tasks the local pool finished, not yet sent. Declared before
  // pool_, whose destructor's callbacks append to it.
  absl::Mutex mu_;
  std::vector<uint64_t> done_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> has_done_{false};  // done_ may have ids
  // Tasks handed to the local pool and not yet answered, by front-end id.
  absl::flat_hash_map<uint64_t, std::shared_ptr<TaskState>> running_;
  std::unique_ptr<LocalDriver> pool_;
};

}  // namespace

int RunMpiAgent() {
  MpiWorld& world = MpiWorld::Get();
  Agent agent(world.comm(), world.rank());
  return agent.Run();
}

}  // namespace procpool::internal
