// WorkerConnection: the pool's side of one worker process, and everything
// the local driver keeps about it: the process (with its pidfd), the
// socket and its buffers, the stderr pipe, the status page with its claim
// table, and the payload regions.
//
// Spawn() starts procpool_worker (spawned or forked from the template, its
// own process group; fd 3
// the socket, 4 the status memory, 5 and 6 the payload regions, 1 and 2
// the stderr pipe unless the caller keeps stdout) and returns the
// connection. The rest are the driver's mechanics: stderr lines, writing
// frames, large payloads through the regions.
//
// Not thread-safe: the local driver's I/O lock guards it. The destructor
// kills (SIGKILL) the worker's process group if it still runs, reaps the
// worker, and closes every descriptor.

#ifndef PROCPOOL_POOL_INTERNAL_WORKER_CONNECTION_H_
#define PROCPOOL_POOL_INTERNAL_WORKER_CONNECTION_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pool/internal/child_process.h"
#include "pool/internal/claim_table.h"
#include "pool/internal/payload_region.h"
#include "pool/internal/shared_memory.h"
#include "pool/internal/task_state.h"
#include "pool/internal/unique_fd.h"
#include "pool/internal/wire.h"
#include "pool/options.h"

namespace procpool::internal {

class CallsFrameBuilder;

class WorkerConnection {
 public:
  // Starts a worker process: `argv` (argv[0] the worker executable) with
  // `fds` mapped, in a process group of its own (WorkerLauncher::Launch).
  using LaunchFn = absl::FunctionRef<absl::StatusOr<ChildProcess>(
      const std::vector<std::string>& argv, const std::vector<ChildProcess::FdMapping>& fds)>;

  // Starts a worker for `slot` as `options` (already validated, paths
  // absolute) say, through `launch`.
  static absl::StatusOr<std::unique_ptr<WorkerConnection>> Spawn(
      const PoolOptions& options, uint64_t id, size_t slot, LaunchFn launch);

  ~WorkerConnection();
  WorkerConnection(const WorkerConnection&) = delete;
  WorkerConnection& operator=(const WorkerConnection&) = delete;

  const WorkerStatusPage& page() const {
    return *static_cast<const WorkerStatusPage*>(status->data());
  }
  int pid() const { return proc.pid(); }

  // Kills what is left of the worker's process group (the worker and what
  // its tasks forked), then reaps the worker. Call once it has exited.
  ExitStatus Reap();

  // Reads what the worker wrote to its stderr (and stdout): each line is
  // copied to this process's stderr with the worker's prefix (when
  // `forward`), and the last `tail_lines` are kept for crash messages.
  // At EOF the pipe is closed and `err` reset.
  void ReadStderr(bool forward, int tail_lines);
  // "; its last stderr lines: ..." or empty.
  std::string StderrTail() const;

  // Writes what `out` holds; false when the worker is gone (EPIPE).
  bool Flush();

  // Puts `args` (a call of task `task` and id `id`, call number `seq`) in
  // the call region with a reference in `frame`. False (nothing written)
  // when they are small, the region is taken or cannot grow.
  bool AddRegionCall(CallsFrameBuilder& frame, uint64_t id, uint32_t task,
                     std::string_view args, uint64_t seq, size_t min_bytes);
  // The `length` bytes of arguments AddRegionCall has just put in the call
  // region, and a pin: while it lives they stay mapped (the worker gone or
  // not) and no other call is written there. See TaskState::ParkArgs.
  std::pair<std::string_view, std::shared_ptr<const void>> PinCallArgs(size_t length);
  // The bytes of a result the worker left in shared memory (`ref` the
  // RegionRef it sent): in its result region, or over its call's arguments
  // (`in_call_region`). Borrowed under a lease that frees the region when
  // dropped, or copied (and the region freed now). kDataLoss for a bad ref.
  absl::StatusOr<ResultBytes> RegionResult(std::string_view ref, bool in_call_region,
                                           bool borrow);
  // The call of number `seq` was answered: its region space is free.
  void Answered(uint64_t seq) {
    if (seq == call_region_seq) call_region_seq = 0;
  }

  // A spare (LocalDriver, kZygote) gets its id and slot when a slot adopts
  // it; other workers keep theirs.
  uint64_t id;
  size_t slot;
  bool spare = false;           // forked ahead, not yet the scheduler's
  ChildProcess proc;
  UniqueFd sock;
  UniqueFd err;                 // read end of the worker's stderr pipe
  std::shared_ptr<SharedMemory> status;  // the page, then the claim table
  ClaimTable claims;
  FrameDecoder decoder;
  std::string out;              // bytes not yet written to the socket
  size_t out_off = 0;
  bool want_write = false;      // EPOLLOUT interest
  bool ready = false;           // hello received
  bool closed = false;          // the pool shut its sending side
  bool hung_up = false;         // its socket closed (EOF or error)
  bool exited = false;          // its pidfd fired
  // The item of a chunk last seen running (ObserveWorkers), and when it
  // was first seen: the worker publishes which item runs, not when each
  // started (a clock read per item costs more than a small item here).
  uint64_t observed_task = 0;
  uint32_t observed_item = 0;
  absl::Time observed_since;
  absl::Status hello_error;     // why its hello (or its manifest) was refused
  uint64_t sent_seq = 0;        // calls written, numbered as the worker does
  uint64_t answered_seq = 0;    // answers read
  // The serial fast path (local_driver.h): the socket is out of the I/O
  // thread's epoll set, held for a caller; `assisting` while one polls it.
  bool caller_owned = false;
  bool assisting = false;

 private:
  WorkerConnection(uint64_t id, size_t slot, ChildProcess proc, UniqueFd sock,
                   std::shared_ptr<SharedMemory> status, size_t max_frame);
  void TakeStderrLine(std::string line, bool forward, int tail_lines);

  std::string err_partial_;          // an unfinished last line
  std::deque<std::string> err_tail_; // the latest complete lines
  // Large payloads (PoolOptions::shared_memory_min_bytes).
  PayloadRegion call_region_{UniqueFd()};
  PayloadRegion result_region_{UniqueFd()};
  uint64_t call_region_seq = 0;  // the call whose arguments are there (0: free)
  // What still needs the call region's bytes, dropped on any thread: an
  // answer written over its call's arguments and still borrowed, parked
  // arguments (PinCallArgs). No call goes there while any is held.
  std::shared_ptr<std::atomic<int>> call_region_holds_ = std::make_shared<std::atomic<int>>(0);
};

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_WORKER_CONNECTION_H_
