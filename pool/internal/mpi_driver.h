// MpiDriver: the Backend of a pool whose workers run on MPI node agents.
//
// Rank 0 (this process) is the front end; every other rank of the job runs
// RunMpiAgent() (mpi_agent.h), a node agent with a LocalDriver of worker
// processes. The agents never run plugin code themselves, so a task that
// crashes its worker fails that one task (the agent replaces the worker)
// instead of taking an MPI rank, and with it the job, down.
//
// The Scheduler (scheduler.h, in SchedulerConfig::Kind::kAgent mode) makes
// every decision: the queue, batches, windows, cancellations, shutdown and
// what happens when an agent is lost; the callers' side (intake, requests,
// start-up and the end) is Driver's. This class only translates: one I/O
// thread owns all MPI traffic of the pool (MpiTransport), turns messages
// into scheduler events (a hello: OnSpawned and OnReady with the agent's
// worker count as capacity; results: OnAnswers; any message: OnHeard; a
// lost agent: OnExit) and carries out the scheduler's actions (calls for
// an agent go in one message; kCancelRemote tells the agent to stop a
// task; kClose and SIGTERM tell it to stop its pool; SIGKILL gives up on
// it, see Control()).
//
// The I/O thread never blocks in MPI. While any call is out it polls
// without sleeping (MPI_Improbe / MPI_Test), so an answer is seen within
// microseconds; with nothing out it spins briefly, then sleeps with a
// back-off (PollBackoff, at most 2 ms), waking at once for new tasks and
// requests.
// An agent not heard from within MpiOptions::agent_timeout is lost: it is
// never sent anything again (a send to a dead rank can hang), and the
// scheduler re-queues its calls on the other agents or fails them with
// kAborted naming the rank.
//
// The destructor drains, as Shutdown(wait=true), then tells the agents to
// stop their pools (their confirmation is awaited, bounded) and joins the
// I/O thread. Terminate() first to cancel instead.

#ifndef PROCPOOL_POOL_INTERNAL_MPI_DRIVER_H_
#define PROCPOOL_POOL_INTERNAL_MPI_DRIVER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
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
#include "pool/internal/driver.h"
#include "pool/internal/mpi_transport.h"
#include "pool/internal/scheduler.h"
#include "pool/internal/task_state.h"
#include "pool/options.h"
#include "pool/stats.h"

namespace procpool::internal {

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

class MpiDriver final : public Driver {
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

  ~MpiDriver() override;

  void Enqueue(std::shared_ptr<TaskState> task) override;
  int num_workers() const override { return total_workers_.load(std::memory_order_relaxed); }
  // The agents' process ids (on their own hosts).
  std::vector<int> WorkerPids() const override ABSL_LOCKS_EXCLUDED(agents_mu_);
  // One WorkerStats per agent rank (slot = rank, pid = the agent's).
  PoolStats Stats() const override ABSL_LOCKS_EXCLUDED(agents_mu_);

  std::vector<AgentSnapshot> Agents() const ABSL_LOCKS_EXCLUDED(agents_mu_);

 private:
  // One agent rank, as the I/O thread sees it.
  struct Agent {
    int rank = 0;
    std::string host;
    int pid = 0;
    int workers = 0;
    WorkerId id = 0;       // the scheduler's, once it asked for the agent
    bool ready = false;    // said hello with the pool's manifest
    bool stopping = false; // asked to stop its pool, not confirmed yet
    bool gone = false;     // stopped, failed to start, or lost
    bool lost = false;
    std::string lost_reason;
    absl::Time last_heard = absl::InfinitePast();
    absl::Time last_sent = absl::InfinitePast();
    absl::Time stop_asked_at = absl::InfinitePast();
    // Given up on (SIGKILL) while it answers: lost unless its pool's stop
    // is confirmed by then.
    absl::Time give_up_at = absl::InfiniteFuture();
    bool killed = false;   // the scheduler gave up on it (SIGKILL)
    uint64_t sent = 0;     // calls sent
    uint64_t answered = 0; // results received
  };

  MpiDriver(PoolOptions options, uint64_t epoch, std::vector<int> live_ranks);

  // Driver
  void Wake() override;
  void WriteSends(std::vector<SendAction>& sends) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void Control(const Action& a) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  size_t Processes() const override {
    return static_cast<size_t>(std::max(1, num_workers()));
  }

  // ---- The I/O thread ----
  void IoLoop() ABSL_LOCKS_EXCLUDED(io_mu_);
  // Polls MPI; true if any message came.
  bool PollMessages(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void HandleMessage(MpiMessage& m, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void HandleHello(Agent& a, const MpiMessage& m, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // The manifest of `a` against the pool's: empty if they agree.
  std::string ManifestDifference(const Agent& a, const std::vector<TaskInfo>& tasks) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void HandleResults(Agent& a, const MpiMessage& m, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // The agent's pool stopped (as asked), or it is lost: the scheduler hears
  // of its end.
  void AgentEnded(Agent& a, const std::string& how, bool clean, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void LoseAgent(Agent& a, const std::string& why, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Asks the agent to stop its local pool (kTagStop), once.
  void AskToStop(Agent& a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Heartbeats, and agents that did not confirm a stop in time.
  void CheckAgents(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void SendTo(Agent& a, int tag, std::string bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  Agent* FindAgent(WorkerId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Sleeps (io_mu_ released) until Wake() or `timeout`.
  void Sleep(absl::Duration timeout) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Copies `a` into the snapshots other threads read.
  void PublishAgent(const Agent& a) ABSL_LOCKS_EXCLUDED(agents_mu_);
  // "MPI rank N (host, pid P)".
  static std::string DescribeAgent(const Agent& a);

  const uint64_t epoch_;
  const std::string config_bytes_;  // kTagConfig for every agent
  // Owned by the I/O thread (and by the destructor once it has joined).
  std::unique_ptr<MpiTransport> transport_;
  // Every agent rank of the job (rank r at r - 1); the scheduler's slot s
  // is the agent at slot_agent_[s].
  std::vector<Agent> agents_ ABSL_GUARDED_BY(io_mu_);
  std::vector<size_t> slot_agent_;
  absl::flat_hash_map<WorkerId, size_t> by_worker_ ABSL_GUARDED_BY(io_mu_);
  // The agent whose manifest is the pool's (SIZE_MAX: none yet).
  size_t first_manifest_ ABSL_GUARDED_BY(io_mu_) = SIZE_MAX;
  absl::Time next_check_ ABSL_GUARDED_BY(io_mu_) = absl::InfinitePast();

  // Wake(): set by any thread, taken by the I/O thread.
  std::atomic<bool> wake_{false};
  std::atomic<bool> sleeping_{false};
  absl::Mutex sleep_mu_;
  absl::CondVar sleep_cv_;

  std::atomic<int> total_workers_{0};
  mutable absl::Mutex agents_mu_ ABSL_ACQUIRED_AFTER(io_mu_);
  std::vector<AgentSnapshot> snapshots_ ABSL_GUARDED_BY(agents_mu_);  // by rank - 1

  std::thread io_thread_;
};

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_MPI_DRIVER_H_
