// procpool_mpi_agent: a node agent of the MPI backend, for jobs whose front
// end is another program (mpirun -np 1 ./app : -np N procpool_mpi_agent).
// Its runfiles hold the worker executable, like any program using //pool.

#include <cstdio>

#include "pool/mpi.h"
#include "pool/tuning.h"

int main(int argc, char** argv) {
  // An agent is one of the pool's own processes, like a worker: it runs
  // with the pool's process-wide settings (before MPI starts threads).
  if (absl::Status s = procpool::TuneProcessForThroughput(); !s.ok()) {
    std::fprintf(stderr, "procpool_mpi_agent: %s\n", s.ToString().c_str());
  }
  absl::StatusOr<std::unique_ptr<procpool::mpi::Session>> mpi =
      procpool::mpi::Session::Init(&argc, &argv);
  if (!mpi.ok()) {
    std::fprintf(stderr, "procpool_mpi_agent: %s\n", mpi.status().ToString().c_str());
    return 1;
  }
  if ((*mpi)->is_front_end()) {
    std::fprintf(stderr,
                 "procpool_mpi_agent: rank 0 is the front end; run your program "
                 "as rank 0 and this one on the other ranks\n");
    return 1;
  }
  return (*mpi)->ServeAsAgent();
}
