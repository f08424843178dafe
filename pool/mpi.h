// The MPI backend: the same ProcessPool API, with the workers spread over
// the nodes of an Open MPI job.
//
// Rank 0 is the pool's front end: the program's own code, which creates the
// pool and submits tasks. Every other rank is a node agent: it runs a local
// pool of worker processes (the usual procpool workers, loading the plugins
// by path on its node) and relays tasks and results. Agents never run plugin
// code themselves, so a task that crashes fails alone, as in a local pool.
//
//   int main(int argc, char** argv) {
//     absl::StatusOr<std::unique_ptr<procpool::mpi::Session>> mpi =
//         procpool::mpi::Session::Init(&argc, &argv);
//     if (!mpi.ok()) return 1;
//     if (!(*mpi)->is_front_end()) return (*mpi)->ServeAsAgent();
//
//     procpool::PoolOptions opts;
//     opts.backend = procpool::PoolBackend::kMpi;
//     opts.max_workers = 4;                       // per agent
//     opts.plugins = {"/shared/plugins/libmath.so"};  // the same path on every node
//     absl::StatusOr<procpool::ProcessPool> pool = procpool::ProcessPool::Create(opts);
//     ...                                         // Submit, Map, AsCompleted, ...
//   }
//
//   mpirun -np 3 ./app      # 1 front end + 2 agents
//
// See docs/DISTRIBUTED.md for launching on a cluster, the flags that keep
// the job alive when an agent dies (--enable-recovery --mca
// orte_abort_on_non_zero_status 0; without them Open MPI aborts the whole
// job when any rank dies), and what happens on each kind of failure.
//
// Link //pool:mpi (it links libmpi); //pool alone does not.
//
// Thread safety: a Session is created and destroyed on one thread, and MPI
// pools are created on rank 0 only, one at a time (the agents serve one pool
// at a time). The pool itself is as thread-safe as any ProcessPool. Do not
// make MPI calls of your own while an MPI pool exists (MPI is initialized
// with MPI_THREAD_SERIALIZED and the pool's I/O thread makes the calls).

#ifndef PROCPOOL_POOL_MPI_H_
#define PROCPOOL_POOL_MPI_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "pool/pool.h"

namespace procpool::mpi {

// MPI for this process, for the MPI backend.
class Session {
 public:
  // Initializes MPI (MPI_Init_thread asking for MPI_THREAD_SERIALIZED)
  // unless the program already did, and takes a private duplicate of
  // MPI_COMM_WORLD (collective: every rank must call Init). Blocks until
  // every rank has. kFailedPrecondition if a Session exists already or MPI
  // offers less than MPI_THREAD_SERIALIZED; kInternal if MPI fails.
  static absl::StatusOr<std::unique_ptr<Session>> Init(int* argc, char*** argv);

  // On rank 0: tells every agent that is not lost that the job is over
  // (waiting at most a few seconds for the messages to leave), then calls
  // MPI_Finalize if Init called MPI_Init. Every MPI pool must be destroyed
  // first. On an agent: MPI_Finalize (after ServeAsAgent returned).
  //
  // Once a rank of the job was lost, rank 0 and the surviving agents leave
  // without MPI_Finalize instead (printing a note on stderr): Open MPI 4.1's
  // MPI_Finalize ends with a fence over every rank, and can wait for the
  // dead ones forever. Launch such jobs with mpirun --mca
  // orte_allowed_exit_without_sync 1 so that this is not taken as a failure.
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  // Rank 0: where pools are created.
  bool is_front_end() const { return rank_ == 0; }

  // On ranks other than 0: serves as a node agent, running the local pools
  // the front end asks for, until the front end's Session ends. Blocks.
  // Returns an exit code for main(): 0 when the front end ended the job, 1
  // if MPI failed. If the front end stays silent for longer than its pool's
  // MpiOptions::agent_timeout while a pool runs, the agent stops its
  // workers and aborts the job (MPI_Abort). Returns 1 at once on rank 0.
  int ServeAsAgent();

 private:
  Session(int rank, int size, bool owns_mpi) : rank_(rank), size_(size), owns_mpi_(owns_mpi) {}
  const int rank_;
  const int size_;
  const bool owns_mpi_;
};

// One agent rank of an MPI pool, as the front end knows it.
struct AgentInfo {
  int rank = 0;
  std::string host;     // its host name
  int pid = 0;          // its process id, on that host
  int workers = 0;      // its local pool's worker processes
  bool ready = false;   // started its pool and said hello
  // Stopped answering (see MpiOptions::agent_timeout), or did not confirm
  // that it stopped its pool when the pool gave up on it; never used again
  // in this job.
  bool lost = false;
  std::string lost_reason;
  uint64_t tasks_done = 0;  // results it sent back
  uint64_t in_flight = 0;   // tasks sent to it and not answered
};

// The agents of `pool`: empty for a pool that does not use the MPI backend.
// Never blocks on agents.
std::vector<AgentInfo> Agents(const ProcessPool& pool);

}  // namespace procpool::mpi

#endif  // PROCPOOL_POOL_MPI_H_
