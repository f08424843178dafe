// MpiBackend: the front end of a pool whose workers run on MPI node agents.
//
// Rank 0 (this process) keeps the queue; every other rank of the job runs
// ServeAsAgent() (mpi_agent.h), a node agent with a local PoolCore of
// worker processes. The agents never run plugin code themselves, so a task
// that crashes its worker fails that one task (the agent replaces the
// worker) instead of taking an MPI rank, and with it the job, down.
//
// One I/O thread owns all MPI traffic of the pool (MpiTransport) and never
// blocks in MPI: it polls, sends batches of calls to each agent within a
// bounded window, and watches the agents with a heartbeat deadline. An
// agent not heard from within MpiOptions::agent_timeout is lost: its
// in-flight tasks are re-queued on the other agents (or fail with kAborted
// naming the rank) and it is never sent anything again, since a send to a
// dead rank can hang.
//
// Threading as for PoolCore: public methods are thread-safe; other threads
// only touch the pending queue and counters, under mu_.
//
// The destructor cancels pending tasks, fails in-flight ones with
// kCancelled, tells the agents to stop their pools (bounded wait for their
// answer) and joins the I/O thread.

#ifndef PROCPOOL_POOL_INTERNAL_MPI_BACKEND_H_
#define PROCPOOL_POOL_INTERNAL_MPI_BACKEND_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pool/internal/backend.h"
#include "pool/internal/mpi_transport.h"
#include "pool/internal/task_state.h"
#include "pool/options.h"
#include "pool/stats.h"

namespace procpool::internal {

class ChunkState;

// What the front end knows about one agent rank (procpool::mpi::Agents).
struct AgentSnapshot {
  int rank = 0;
  std::string host;
  int pid = 0;
  int workers = 0;
  bool ready = false;  // said hello
  bool lost = false;
  std::string lost_reason;
  uint64_t tasks_done = 0;  // results received from it
  uint64_t in_flight = 0;
};

class MpiBackend final : public Backend {
 public:
  // Sends the pool's configuration to every agent rank not known lost and
  // waits (at most options.start_timeout) for each to start its local pool
  // and answer with its plugin manifest. Must run on rank 0 inside a
  // procpool::mpi::Session, with no other MPI pool alive. Errors:
  // kFailedPrecondition (no Session, not rank 0, no agent rank, another MPI
  // pool alive, kBreakPool asked, or the manifests differ between ranks),
  // an agent's own start error prefixed with its rank and host,
  // kDeadlineExceeded naming the ranks that did not answer.
  static absl::StatusOr<std::unique_ptr<Backend>> Start(PoolOptions options);

  ~MpiBackend() override;
  MpiBackend(const MpiBackend&) = delete;
  MpiBackend& operator=(const MpiBackend&) = delete;

  const std::vector<TaskInfo>& tasks() const override { return tasks_; }
  absl::StatusOr<uint32_t> FindTask(absl::string_view name, uint64_t fingerprint,
                                    absl::string_view readable) const override;
  void Enqueue(std::shared_ptr<TaskState> task) override ABSL_LOCKS_EXCLUDED(mu_);
  void EnqueueMany(std::vector<std::shared_ptr<TaskState>>& tasks) override
      ABSL_LOCKS_EXCLUDED(mu_);
  size_t NextSubmissionIndex() override { return submissions_.fetch_add(1); }
  bool Shutdown(bool wait, bool cancel_pending, absl::Duration timeout) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void Terminate() override ABSL_LOCKS_EXCLUDED(mu_);
  int num_workers() const override {
    return total_workers_.load(std::memory_order_relaxed);
  }
  // The agents' process ids (on their own hosts).
  std::vector<int> WorkerPids() const override ABSL_LOCKS_EXCLUDED(mu_);
  // One WorkerStats per agent rank (slot = rank, pid = the agent's).
  PoolStats Stats() const override ABSL_LOCKS_EXCLUDED(mu_);
  TaskPolicy DefaultPolicy() const override {
    return TaskPolicy{options_.task_timeout, options_.retries};
  }
  size_t SuggestedWindow() const override;
  size_t SuggestedChunkSize() const override;
  size_t max_chunk_bytes() const override;

  std::vector<AgentSnapshot> Agents() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Agent;
  MpiBackend(PoolOptions options, uint64_t epoch);

  // ---- I/O thread ----
  void IoLoop();
  void SendTo(Agent& a, int tag, std::string bytes);
  void HandleMessage(MpiMessage& m);
  void HandleHello(Agent& a, const MpiMessage& m);
  void HandleResults(Agent& a, const MpiMessage& m);
  void ApplyChunkResult(Agent& a, ChunkState& chunk, RemoteResult& r);
  void CheckStart();
  void CheckAgents();
  void HandleCancelRequests();
  void Dispatch();
  void LoseAgent(Agent& a, const std::string& why);
  void BreakPool(absl::Status why);
  void StopAgents(bool graceful);
  void Finish(TaskState& t, absl::Status status, std::string payload = {});
  void PublishAgent(const Agent& a) ABSL_LOCKS_EXCLUDED(mu_);
  void Wake() ABSL_LOCKS_EXCLUDED(mu_);
  std::string DescribeTask(const TaskState& t) const;
  std::string DescribeAgent(const Agent& a) const;

  const PoolOptions options_;
  const uint64_t epoch_;
  // Set by the I/O thread before Start() returns; read-only afterwards.
  std::vector<TaskInfo> tasks_;
  absl::flat_hash_map<std::string, uint32_t> task_index_;

  std::atomic<size_t> submissions_{0};
  std::atomic<int> total_workers_{0};
  std::atomic<uint64_t> avg_task_ns_{0};
  std::atomic<uint64_t> succeeded_{0};
  std::atomic<uint64_t> failed_{0};
  // PoolStats::callback_errors, shared with every task queued here.
  const std::shared_ptr<std::atomic<uint64_t>> callback_errors_ =
      std::make_shared<std::atomic<uint64_t>>(0);

  // Owned by the I/O thread.
  std::unique_ptr<MpiTransport> transport_;
  std::vector<std::unique_ptr<Agent>> agents_;  // indexed by rank (0: null)
  absl::Time start_deadline_;
  bool started_io_ = false;  // every agent answered (I/O thread's view)
  size_t rr_next_ = 0;

  mutable absl::Mutex mu_;
  std::deque<std::shared_ptr<TaskState>> pending_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  size_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t submitted_ ABSL_GUARDED_BY(mu_) = 0;
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  absl::Status refuse_reason_ ABSL_GUARDED_BY(mu_);
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  enum class Stop { kNo, kGraceful, kForce };
  Stop stop_ ABSL_GUARDED_BY(mu_) = Stop::kNo;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  bool start_done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status start_error_ ABSL_GUARDED_BY(mu_);
  bool io_done_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<uint64_t> cancel_requests_ ABSL_GUARDED_BY(mu_);
  std::vector<AgentSnapshot> snapshots_ ABSL_GUARDED_BY(mu_);  // by rank
  std::shared_ptr<CancelChannel> cancel_channel_;

  std::thread io_thread_;
};

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_MPI_BACKEND_H_
