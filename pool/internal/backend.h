// Backend: what a ProcessPool needs from the machinery that runs its tasks.
//
// Two implementations serve the same ProcessPool API:
//   - LocalDriver (local_driver.h): worker processes on this machine, talking over
//     socketpairs. The default.
//   - MpiDriver (mpi_driver.h, in //pool:mpi): MPI rank 0 is the front end;
//     every other rank is a node agent running a LocalDriver of its own.
// Both are Drivers (driver.h) of the same Scheduler (scheduler.h).
//
// Contract shared by both: every TaskState given to Enqueue/EnqueueMany (a
// single call, or a ChunkState of several items of one map) is completed
// exactly once (value, task error, worker or agent loss, timeout,
// cancellation or shutdown), and no method ever blocks on a worker except
// Shutdown(wait=true).
//
// Thread safety: every method may be called from any number of threads at
// once; the backend must outlive every call.

#ifndef PROCPOOL_POOL_INTERNAL_BACKEND_H_
#define PROCPOOL_POOL_INTERNAL_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pool/internal/admission.h"
#include "pool/internal/task_state.h"
#include "pool/options.h"
#include "pool/stats.h"

namespace procpool::internal {

struct TaskInfo {
  std::string name;
  std::string plugin;  // path of the plugin that registered it
  uint64_t fingerprint;
  std::string signature;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // The tasks of all plugins, in load order; immutable once created.
  virtual const std::vector<TaskInfo>& tasks() const = 0;

  // Index of the task `name` whose fingerprint is `fingerprint`. kNotFound
  // for an unknown name, kInvalidArgument for a signature mismatch (the
  // message shows both signatures). Never blocks.
  virtual absl::StatusOr<uint32_t> FindTask(absl::string_view name,
                                            uint64_t fingerprint,
                                            absl::string_view readable) const = 0;

  // Queues tasks (their args already serialized). After Shutdown, or once
  // the backend is broken, completes them at once with the reason instead.
  // Never blocks on workers.
  virtual void Enqueue(std::shared_ptr<TaskState> task) = 0;
  virtual void EnqueueMany(std::vector<std::shared_ptr<TaskState>>& tasks) = 0;

  // Next value of the pool-wide submission counter.
  virtual size_t NextSubmissionIndex() = 0;

  // See ProcessPool::Shutdown: stop accepting tasks, run what is left
  // (cancel what is queued with `cancel_pending`) and, `timeout` after the
  // call, cancel what still runs; with `wait`, block until the workers are
  // gone. True if nothing had to be cancelled at the deadline.
  virtual bool Shutdown(bool wait, bool cancel_pending, absl::Duration timeout) = 0;
  // See ProcessPool::Terminate: cancel everything now and kill the
  // workers; blocks until they are gone.
  virtual void Terminate() = 0;

  // Worker processes serving the pool (for MPI: over every live agent).
  virtual int num_workers() const = 0;
  virtual std::vector<int> WorkerPids() const = 0;
  virtual PoolStats Stats() const = 0;

  // Pool-wide defaults for a task's policy.
  virtual TaskPolicy DefaultPolicy() const = 0;

  // How far ahead a lazy map should read (its chunks of `chunksize` items,
  // 0: automatic), how many items it puts in one chunk (ChunkState) when
  // automatic, and how many bytes of arguments a chunk may hold.
  virtual size_t SuggestedWindow(size_t chunksize) const = 0;
  virtual size_t SuggestedChunkSize() const = 0;
  virtual size_t max_chunk_bytes() const = 0;

  // Backpressure: the bound of PoolOptions::max_pending that Submit and
  // the maps take slots from (admission.h); null when there is none.
  virtual std::shared_ptr<Admission> admission() const { return nullptr; }
  // True on a thread where waiting for a slot could hold up the threads
  // that free slots: one running the done-callbacks of tasks the pool
  // resolves. Submit never waits there.
  virtual bool MustNotWait() const { return false; }
};

// The lookup both backends do in FindTask(), over a task table and its
// name index; `plugins` is only quoted in the kNotFound message.
absl::StatusOr<uint32_t> FindTaskIn(
    const std::vector<TaskInfo>& tasks,
    const absl::flat_hash_map<std::string, uint32_t>& index,
    const std::vector<std::string>& plugins, absl::string_view name,
    uint64_t fingerprint, absl::string_view readable);

// Creates the MPI backend. Set by //pool:mpi when it is linked in (a static
// initializer in mpi_driver.cc); null otherwise, and then
// ProcessPool::Create refuses PoolBackend::kMpi with kFailedPrecondition.
using BackendFactory =
    absl::StatusOr<std::unique_ptr<Backend>> (*)(PoolOptions options);
BackendFactory& MpiBackendFactory();

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_BACKEND_H_
