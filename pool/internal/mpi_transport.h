// The MPI side of the MPI backend: the process-wide MPI state (MpiWorld),
// the messages the front end (rank 0, MpiDriver) and the node agents
// (ranks >= 1) exchange, MpiTransport, a non-blocking message pump, and
// the pace at which both ends poll it (PollBackoff).
//
// Every message is `u64 epoch (little endian)` followed by the cereal
// archive of one struct below; its MPI tag says which. The epoch numbers the
// pools of one MPI job, so that a late message of an earlier pool is
// recognised and dropped. MPI delivers messages between two ranks in order
// and intact, and both ends run the same binary (or builds of the same
// source), so messages are decoded with cereal itself (DecodeMessage), not
// with the hostile-input decoders the worker socket uses.
//
// Thread safety: MpiWorld is thread-safe. An MpiTransport belongs to one
// thread, and MPI is initialized with MPI_THREAD_SERIALIZED: at any time at
// most one thread of a process makes MPI calls (the Session's thread before
// and after a pool, the pool's I/O thread while it lives).

#ifndef PROCPOOL_POOL_INTERNAL_MPI_TRANSPORT_H_
#define PROCPOOL_POOL_INTERNAL_MPI_TRANSPORT_H_

#define OMPI_SKIP_MPICXX 1  // the C API only: no libmpi_cxx
#include <openmpi/mpi.h>  // Debian: /usr/include/x86_64-linux-gnu/openmpi

#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pool/internal/wire.h"
#include "tasks/serialize.h"

namespace procpool::internal {

// ---- Process-wide state ----

// What a procpool::mpi::Session set up. One per process.
class MpiWorld {
 public:
  static MpiWorld& Get();

  // Called by the Session once MPI is initialized (and by its destructor,
  // with comm = MPI_COMM_NULL).
  void Set(MPI_Comm comm, int rank, int size) ABSL_LOCKS_EXCLUDED(mu_);

  bool initialized() const ABSL_LOCKS_EXCLUDED(mu_);
  MPI_Comm comm() const ABSL_LOCKS_EXCLUDED(mu_);
  int rank() const ABSL_LOCKS_EXCLUDED(mu_);
  int size() const ABSL_LOCKS_EXCLUDED(mu_);

  // Ranks found lost by any pool of this job: never sent to again.
  void MarkLost(int rank) ABSL_LOCKS_EXCLUDED(mu_);
  bool IsLost(int rank) const ABSL_LOCKS_EXCLUDED(mu_);
  bool AnyLost() const ABSL_LOCKS_EXCLUDED(mu_);

  // Set on an agent by the front end's exit message: MPI_Finalize would
  // wait for the lost ranks.
  void SetSkipFinalize() ABSL_LOCKS_EXCLUDED(mu_);
  bool skip_finalize() const ABSL_LOCKS_EXCLUDED(mu_);

  // At most one MPI pool at a time: true if this call took the slot.
  bool TryAcquirePool() ABSL_LOCKS_EXCLUDED(mu_);
  void ReleasePool() ABSL_LOCKS_EXCLUDED(mu_);
  bool pool_active() const ABSL_LOCKS_EXCLUDED(mu_);

  uint64_t NextEpoch() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  MPI_Comm comm_ ABSL_GUARDED_BY(mu_) = MPI_COMM_NULL;
  int rank_ ABSL_GUARDED_BY(mu_) = -1;
  int size_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_set<int> lost_ ABSL_GUARDED_BY(mu_);
  bool pool_active_ ABSL_GUARDED_BY(mu_) = false;
  bool skip_finalize_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
};

// ---- Messages ----

enum MpiTag : int {
  kTagConfig = 101,     // front end -> agent: AgentConfig (start a pool)
  kTagHello = 102,      // agent -> front end: AgentHello
  kTagCalls = 103,      // front end -> agent: std::vector<RemoteCall>
  kTagResults = 104,    // agent -> front end: RemoteResults
  kTagCancel = 105,     // front end -> agent: std::vector<uint64_t> task ids
  kTagHeartbeat = 106,  // both ways: Heartbeat
  kTagStop = 107,       // front end -> agent: Heartbeat (end this pool)
  kTagStopped = 108,    // agent -> front end: Heartbeat (pool ended)
  kTagExit = 109,       // front end -> agent: Heartbeat (leave ServeAsAgent)
};

// The PoolOptions an agent builds its local pool from.
struct AgentConfig {
  std::vector<std::string> plugins;
  std::string worker_path;  // empty: the agent's own default
  int32_t max_workers = 0;
  uint64_t max_tasks_per_child = 0;
  uint64_t max_worker_rss_bytes = 0;
  int64_t kill_grace_ns = 0;
  bool forward_worker_stderr = true;
  int32_t stderr_tail_lines = 8;
  int64_t start_timeout_ns = 0;
  uint64_t max_frame_bytes = 0;
  std::string init_task;
  uint64_t init_fingerprint = 0;
  std::string init_args;
  int64_t heartbeat_ns = 0;
  int64_t agent_timeout_ns = 0;
  template <class A>
  void serialize(A& ar) {
    ar(plugins, worker_path, max_workers, max_tasks_per_child,
       max_worker_rss_bytes, kill_grace_ns, forward_worker_stderr,
       stderr_tail_lines, start_timeout_ns, max_frame_bytes, init_task,
       init_fingerprint, init_args, heartbeat_ns, agent_timeout_ns);
  }
};

struct RemoteTask {
  std::string name;
  std::string plugin;
  uint64_t fingerprint = 0;
  std::string signature;
  template <class A>
  void serialize(A& ar) {
    ar(name, plugin, fingerprint, signature);
  }
};

struct AgentHello {
  std::string host;
  int32_t pid = 0;
  uint32_t error_code = 0;  // absl::StatusCode; 0 with an empty error
  std::string error;
  int32_t workers = 0;
  std::vector<RemoteTask> tasks;
  template <class A>
  void serialize(A& ar) {
    ar(host, pid, error_code, error, workers, tasks);
  }
};

// One task for an agent; `id` is the front end's, `index` the input index
// (so the agent's messages name the same input as the caller sees). A
// chunk (task with kChunkBit) carries its unanswered items in `args`, in
// the chunk-args format of wire.h; `index` is then its first item's.
struct RemoteCall {
  uint64_t id = 0;
  uint32_t task = 0;
  uint64_t index = 0;
  int64_t timeout_ns = -1;  // -1: none
  int32_t retries = 0;
  std::string args;
  template <class A>
  void serialize(A& ar) {
    ar(id, task, index, timeout_ns, retries, args);
  }
};

// The outcome of a call, as a worker's answer would be (wire.h): `code` a
// ResultCode, kOk with the result's archive, or kStatus with EncodeStatus
// bytes (the message names the agent's rank); for a chunk (RemoteCall::task
// has kChunkBit), kOk with a chunk result answering every item sent, in
// order. `run_ns`: the call's run time (a chunk: of all its items).
struct RemoteResult {
  uint64_t id = 0;
  uint8_t code = 0;
  uint64_t run_ns = 0;
  std::string payload;
  template <class A>
  void serialize(A& ar) {
    ar(id, code, run_ns, payload);
  }
};

struct RemoteResults {
  std::vector<RemoteResult> results;
  template <class A>
  void serialize(A& ar) {
    ar(results);
  }
};

// Heartbeats, stop and exit messages. On kTagExit, kSkipFinalize tells
// the agent that a rank of the job was lost (see Session::~Session).
struct Heartbeat {
  static constexpr uint64_t kSkipFinalize = 1;
  uint64_t flags = 0;
  template <class A>
  void serialize(A& ar) {
    ar(flags);
  }
};

// u64 epoch + archive of `msg`.
template <class Msg>
std::string EncodeMpiMessage(uint64_t epoch, const Msg& msg) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(epoch >> (8 * i));
  internal::AppendArchive(&out, msg);
  return out;
}

// The epoch of a message; 0 if it is too short to have one.
uint64_t MpiMessageEpoch(std::string_view bytes);

// Decodes the archive after the epoch; kDataLoss naming `what`.
template <class Msg>
absl::StatusOr<Msg> DecodeMpiMessage(std::string_view bytes, std::string_view what) {
  if (bytes.size() < 8) {
    return absl::DataLossError(std::string(what) + " message is truncated");
  }
  return DecodeMessage<Msg>(bytes.substr(8), what);
}

// ---- The message pump ----

struct MpiMessage {
  int source = -1;
  int tag = 0;
  std::string bytes;
};

// Non-blocking sends and receives on one communicator. Never blocks: sends
// are MPI_Isend, receives MPI_Improbe + MPI_Imrecv, and completion is
// checked with MPI_Test. A rank that was abandoned (lost) is never sent to
// again, and what was in progress with it is left to MPI: its buffers are
// kept until the process exits, because MPI may still touch them.
//
// The destructor waits (at most `linger`, polling) for sends to ranks that
// were not abandoned to complete, then leaves the rest as for a lost rank.
class MpiTransport {
 public:
  explicit MpiTransport(MPI_Comm comm) : comm_(comm) {}
  ~MpiTransport();
  MpiTransport(const MpiTransport&) = delete;
  MpiTransport& operator=(const MpiTransport&) = delete;

  // Queues `bytes` for `rank`. kFailedPrecondition for an abandoned rank;
  // kInternal naming the rank if MPI refuses.
  absl::Status Send(int rank, int tag, std::string bytes);

  // Progresses sends and receives; the next complete message, if any.
  // kInternal if MPI fails.
  absl::StatusOr<std::optional<MpiMessage>> Poll();

  // Forgets `rank` (see above).
  void Abandon(int rank);

  // Sends not yet completed (all ranks).
  size_t pending_sends() const { return sends_.size(); }

  // Polls until every send to a rank not abandoned has completed, at most
  // until `deadline`. True if they all did.
  bool FlushUntil(absl::Time deadline);

  // How long the destructor waits for sends.
  void set_linger(absl::Duration d) { linger_ = d; }

 private:
  struct Pending {
    int rank;
    MPI_Request request;
    std::unique_ptr<std::string> buffer;
  };
  void ProgressSends();
  // Keeps what MPI may still use alive until the process exits.
  static void Bury(std::unique_ptr<std::string> buffer);

  MPI_Comm comm_;
  std::vector<Pending> sends_;
  struct Receiving {
    int source;
    int tag;
    MPI_Request request;
    std::unique_ptr<std::string> buffer;
  };
  // Per source, in the order MPI matched them: a message is returned only
  // once those matched before it from the same rank were.
  absl::flat_hash_map<int, std::deque<Receiving>> receiving_;
  absl::flat_hash_set<int> abandoned_;
  absl::Duration linger_ = absl::Seconds(2);
};

// How long a polling loop (the front end's I/O thread, an agent) sleeps
// before it polls MPI again: not at all while work is out (an answer may
// come any microsecond), nor for `spin` (default kSpin) after the last
// activity (a caller that waits on each answer sends its next call within
// microseconds); then kFirstSleep at a time while traffic was recent
// (kWarm: a burst of calls may resume, and a message then waits at most
// one short sleep); after that, sleeps that double up to kMaxSleep. The
// loops wake early when their own threads have news. Not thread-safe: one
// per loop.
class PollBackoff {
 public:
  static constexpr absl::Duration kSpin = absl::Microseconds(200);
  static constexpr absl::Duration kWarm = absl::Milliseconds(50);
  static constexpr absl::Duration kFirstSleep = absl::Microseconds(20);
  static constexpr absl::Duration kMaxSleep = absl::Milliseconds(2);

  explicit PollBackoff(absl::Duration spin = kSpin) : spin_(spin) {}

  // Something was sent or received.
  void Activity(absl::Time now) {
    last_ = now;
    sleep_ = kFirstSleep;
  }
  // Zero: poll again at once (yielding the CPU to whoever needs it).
  absl::Duration Next(absl::Time now, bool busy) {
    const absl::Duration quiet = now - last_;
    if (busy || quiet < spin_) return absl::ZeroDuration();
    if (quiet < kWarm) return kFirstSleep;
    sleep_ = std::min(sleep_ * 2, kMaxSleep);
    return sleep_;
  }

 private:
  const absl::Duration spin_;
  absl::Time last_ = absl::InfinitePast();
  absl::Duration sleep_ = kFirstSleep;
};

// "MPI_ERR_...: text" for an MPI error code.
std::string MpiErrorString(int code);

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_MPI_TRANSPORT_H_
