#include "pool/mpi.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "pool/internal/mpi_agent.h"
#include "pool/internal/mpi_driver.h"
#include "pool/internal/mpi_transport.h"

namespace procpool::mpi {

absl::StatusOr<std::unique_ptr<Session>> Session::Init(int* argc, char*** argv) {
  internal::MpiWorld& world = internal::MpiWorld::Get();
  if (world.initialized()) {
    return absl::FailedPreconditionError("a procpool::mpi::Session exists already");
  }
  int initialized = 0;
  MPI_Initialized(&initialized);
  int provided = 0;
  const bool owns = !initialized;
  if (owns) {
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) {
      return absl::InternalError(
          absl::StrCat("MPI_Init_thread: ", internal::MpiErrorString(rc)));
    }
  } else {
    MPI_Query_thread(&provided);
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "MPI offers thread level ", provided,
        "; the MPI backend needs MPI_THREAD_SERIALIZED"));
  }
  MPI_Comm comm;
  int rc = MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  if (rc != MPI_SUCCESS) {
    return absl::InternalError(
        absl::StrCat("MPI_Comm_dup: ", internal::MpiErrorString(rc)));
  }
  // Errors come back as codes (and become Statuses) instead of aborting.
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  int rank = 0, size = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  world.Set(comm, rank, size);
  return std::unique_ptr<Session>(new Session(rank, size, owns));
}

Session::~Session() {
  internal::MpiWorld& world = internal::MpiWorld::Get();
  if (rank_ == 0) {
    internal::MpiTransport transport(world.comm());
    transport.set_linger(absl::Seconds(5));
    internal::Heartbeat exit;
    if (world.AnyLost()) exit.flags |= internal::Heartbeat::kSkipFinalize;
    for (int r = 1; r < size_; ++r) {
      if (world.IsLost(r)) continue;
      transport.Send(r, internal::kTagExit, internal::EncodeMpiMessage(0, exit))
          .IgnoreError();
    }
  }  // ~MpiTransport waits for the sends
  const bool skip = world.skip_finalize();
  world.Set(MPI_COMM_NULL, -1, 0);
  if (!owns_mpi_) return;
  if (skip) {
    // Open MPI 4.1's MPI_Finalize ends with a fence over every rank of the
    // job, dead ones included, and can wait for them forever. Leaving
    // without it is what mpirun --mca orte_allowed_exit_without_sync 1
    // accepts (docs/DISTRIBUTED.md).
    static constexpr char kNote[] =
        "[procpool mpi] a rank of this job was lost: leaving without "
        "MPI_Finalize\n";
    ssize_t r = ::write(STDERR_FILENO, kNote, sizeof(kNote) - 1);
    (void)r;
    return;
  }
  MPI_Finalize();
}

int Session::ServeAsAgent() {
  if (rank_ == 0) return 1;
  return internal::RunMpiAgent();
}

std::vector<AgentInfo> Agents(const ProcessPool& pool) {
  std::vector<AgentInfo> out;
  auto* backend = dynamic_cast<internal::MpiDriver*>(&pool.core_for_internal_use());
  if (backend == nullptr) return out;
  for (const internal::AgentSnapshot& a : backend->Agents()) {
    out.push_back(AgentInfo{a.rank, a.host, a.pid, a.workers, a.ready, a.lost,
                            a.lost_reason, a.tasks_done, a.in_flight});
  }
  return out;
}

}  // namespace procpool::mpi
