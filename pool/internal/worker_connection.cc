#include "pool/internal/worker_connection.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "pool/internal/limits.h"
#include "pool/internal/status_macros.h"
#include "pool/internal/worker_command.h"

namespace procpool::internal {

namespace {

constexpr int kSocketBufferBytes = 4 << 20;
constexpr size_t kMaxLine = 4096;      // a longer line without newline is cut
constexpr size_t kMaxTailLine = 512;   // a quoted line is cut to this

// The pool's own mapping of a call region when it covers `ref`: a worker
// writes an answer there (kRegionResultInCall) only within what the pool
// has mapped. kDataLoss otherwise.
absl::StatusOr<std::shared_ptr<RegionMapping>> OwnMappingCovering(
    const PayloadRegion& region, RegionRef ref) {
  const std::shared_ptr<RegionMapping>& map = region.mapping();
  const uint64_t size = map == nullptr ? 0 : map->size();
  if (ref.offset > size || ref.length > size - ref.offset) {
    return absl::DataLossError(absl::StrCat(
        "a call region reference [", ref.offset, ", +", ref.length,
        ") is beyond the ", size, " bytes the pool mapped"));
  }
  return map;
}

std::atomic<uint64_t>* ClaimWords(SharedMemory& status) {
  return reinterpret_cast<std::atomic<uint64_t>*>(static_cast<char*>(status.data()) +
                                                  kWorkerStatusPageSize);
}

}  // namespace

WorkerConnection::WorkerConnection(uint64_t id, size_t slot, ChildProcess proc,
                                   UniqueFd sock, std::shared_ptr<SharedMemory> status,
                                   size_t max_frame)
    : id(id),
      slot(slot),
      proc(std::move(proc)),
      sock(std::move(sock)),
      status(status),
      claims(ClaimWords(*status), status),
      decoder(max_frame) {}

WorkerConnection::~WorkerConnection() {
  if (!proc.reaped()) Reap();
}

absl::StatusOr<std::unique_ptr<WorkerConnection>> WorkerConnection::Spawn(
    const PoolOptions& options, uint64_t id, size_t slot, LaunchFn launch) {
  PROCPOOL_ASSIGN_OR_RETURN(auto pair, MakeSocketPair());
  // Large payloads cross in fewer, bigger steps (each a wake-up of the
  // other side): ask for 4 MiB send buffers (the kernel caps this at
  // net.core.wmem_max; failing is harmless).
  for (int fd : {pair.first.get(), pair.second.get()}) {
    int bytes = kSocketBufferBytes;
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
  }
  // Keep the child's descriptors off the numbers it will see them under.
  PROCPOOL_ASSIGN_OR_RETURN(UniqueFd child_sock, DupCloseOnExec(pair.second.get(), 10));
  pair.second.Reset();
  PROCPOOL_ASSIGN_OR_RETURN(SharedMemory status,
                            SharedMemory::Create(kWorkerStatusMemoryBytes));
  PROCPOOL_ASSIGN_OR_RETURN(UniqueFd status_fd, DupCloseOnExec(status.fd(), 10));
  int err_fds[2];
  if (::pipe2(err_fds, O_CLOEXEC) != 0) return ErrnoToStatus("pipe2", errno);
  UniqueFd err_read(err_fds[0]);
  UniqueFd err_write_low(err_fds[1]);
  PROCPOOL_ASSIGN_OR_RETURN(UniqueFd err_write, DupCloseOnExec(err_write_low.get(), 10));
  err_write_low.Reset();

  WorkerCommand command;
  command.parent = ::getpid();
  command.max_frame = options.max_frame_bytes;
  command.max_tasks = options.max_tasks_per_child;
  command.max_rss = options.max_worker_rss_bytes;
  command.preload_task = options.preload.task;
  command.preload_fingerprint = options.preload.fingerprint;
  command.preload_args = options.preload.args;
  command.init_task = options.initializer.task;
  command.init_fingerprint = options.initializer.fingerprint;
  command.init_args = options.initializer.args;
  command.plugins = options.plugins;
  command.sandbox = options.sandbox;
  command.sandbox_stop_on_denied = options.sandbox_on_denied == SandboxDenial::kStopWorker;
  for (const SandboxPath& p : options.sandbox_paths) {
    (p.writable ? command.sandbox_write : command.sandbox_read).push_back(p.path);
  }
  command.sandbox_max_file_bytes = options.sandbox_max_file_bytes;
  command.sandbox_max_processes = options.sandbox_max_processes;
  command.sandbox_netns = options.sandbox_network_namespace;
  SetWorkerLimitArgs(options.limits, &command);  // hard limits (limits.h)
  std::vector<ChildProcess::FdMapping> fds = {
      {child_sock.get(), command.fd}, {status_fd.get(), command.status_fd},
      {err_write.get(), STDERR_FILENO}};
  // What a task prints goes where its stderr goes, not into this
  // process's own output.
  if (!options.inherit_worker_stdout) fds.push_back({err_write.get(), STDOUT_FILENO});
  PayloadRegion call_region{UniqueFd()}, result_region{UniqueFd()};
  UniqueFd call_region_fd, result_region_fd;
  if (options.shared_memory_min_bytes > 0) {
    PROCPOOL_ASSIGN_OR_RETURN(call_region, PayloadRegion::Create("procpool-calls"));
    PROCPOOL_ASSIGN_OR_RETURN(result_region, PayloadRegion::Create("procpool-results"));
    PROCPOOL_ASSIGN_OR_RETURN(call_region_fd, DupCloseOnExec(call_region.fd(), 10));
    PROCPOOL_ASSIGN_OR_RETURN(result_region_fd, DupCloseOnExec(result_region.fd(), 10));
    command.call_region_fd = 5;
    command.result_region_fd = 6;
    command.shm_min = options.shared_memory_min_bytes;
    fds.push_back({call_region_fd.get(), command.call_region_fd});
    fds.push_back({result_region_fd.get(), command.result_region_fd});
  }
  PROCPOOL_ASSIGN_OR_RETURN(ChildProcess proc,
                            launch(command.ToArgv(options.worker_path), fds));
  UniqueFd sock = std::move(pair.first);
  PROCPOOL_RETURN_IF_ERROR(SetNonBlocking(sock.get(), true));
  PROCPOOL_RETURN_IF_ERROR(SetNonBlocking(err_read.get(), true));
  std::unique_ptr<WorkerConnection> w(new WorkerConnection(
      id, slot, std::move(proc), std::move(sock),
      std::make_shared<SharedMemory>(std::move(status)), options.max_frame_bytes));
  w->err = std::move(err_read);
  w->call_region_ = std::move(call_region);
  w->result_region_ = std::move(result_region);
  return w;
}

ExitStatus WorkerConnection::Reap() {
  // Before the reap, while the worker's pid (its process group's id) cannot
  // be reused: what its tasks forked goes with it.
  if (!proc.reaped() && ::kill(-proc.pid(), SIGKILL) != 0) {
    proc.Kill(SIGKILL);  // no group (yet): the worker itself
  }
  return proc.Wait();
}

// ---------------------------------------------------------------------------
// Stderr

void WorkerConnection::ReadStderr(bool forward, int tail_lines) {
  if (!err) return;
  char buf[16 * 1024];
  while (true) {
    ssize_t n = ::read(err.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
        // EOF: the worker (and anything it forked) closed its stderr.
        err.Reset();
        if (!err_partial_.empty()) TakeStderrLine(std::move(err_partial_), forward, tail_lines);
        err_partial_.clear();
      }
      return;
    }
    std::string_view chunk(buf, static_cast<size_t>(n));
    while (!chunk.empty()) {
      const size_t nl = chunk.find('\n');
      if (nl == std::string_view::npos) {
        err_partial_.append(chunk.data(), chunk.size());
        // A runaway line without newlines is cut, not buffered forever.
        if (err_partial_.size() > kMaxLine) {
          TakeStderrLine(std::move(err_partial_), forward, tail_lines);
          err_partial_.clear();
        }
        break;
      }
      err_partial_.append(chunk.data(), nl);
      TakeStderrLine(std::move(err_partial_), forward, tail_lines);
      err_partial_.clear();
      chunk.remove_prefix(nl + 1);
    }
  }
}

void WorkerConnection::TakeStderrLine(std::string line, bool forward, int tail_lines) {
  if (forward) {
    std::string out =
        absl::StrCat("[procpool worker ", slot, " pid ", proc.pid(), "] ", line, "\n");
    ssize_t r = ::write(STDERR_FILENO, out.data(), out.size());
    (void)r;
  }
  if (tail_lines <= 0) return;
  if (line.size() > kMaxTailLine) line = absl::StrCat(line.substr(0, kMaxTailLine - 3), "...");
  err_tail_.push_back(std::move(line));
  while (err_tail_.size() > static_cast<size_t>(tail_lines)) err_tail_.pop_front();
}

std::string WorkerConnection::StderrTail() const {
  if (err_tail_.empty()) return "";
  std::string tail = "; its last stderr lines:";
  for (const std::string& l : err_tail_) absl::StrAppend(&tail, "\n  | ", l);
  return tail;
}

// ---------------------------------------------------------------------------
// Writing

bool WorkerConnection::Flush() {
  while (out_off < out.size()) {
    // MSG_NOSIGNAL: a worker that died must not take this process down
    // with SIGPIPE.
    ssize_t n = ::send(sock.get(), out.data() + out_off, out.size() - out_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      return false;  // gone; its pidfd tells how
    }
    out_off += static_cast<size_t>(n);
  }
  out.clear();
  out_off = 0;
  if (out.capacity() > (16u << 20)) std::string().swap(out);
  return true;
}

// ---------------------------------------------------------------------------
// Large payloads

bool WorkerConnection::AddRegionCall(CallsFrameBuilder& frame, uint64_t id, uint32_t task,
                                     std::string_view args, uint64_t seq,
                                     size_t min_bytes) {
  if (min_bytes == 0 || args.size() < min_bytes || call_region_seq != 0 ||
      !call_region_.valid() || call_region_holds_->load(std::memory_order_acquire) != 0) {
    return false;
  }
  // On failure (no memory for the region) the socket still works.
  if (!call_region_.Reserve(args.size()).ok()) return false;
  std::memcpy(call_region_.data(), args.data(), args.size());
  std::string ref;
  AppendRegionRef(&ref, RegionRef{0, args.size()});
  frame.Add(id, task | kRegionBit, ref);
  call_region_seq = seq;
  return true;
}

std::pair<std::string_view, std::shared_ptr<const void>> WorkerConnection::PinCallArgs(
    size_t length) {
  call_region_holds_->fetch_add(1, std::memory_order_relaxed);
  std::shared_ptr<RegionMapping> map = call_region_.mapping();
  const char* base = map->data();
  std::string_view bytes(base, length);
  std::shared_ptr<const void> pin(
      base, [map = std::move(map), holds = call_region_holds_](const void*) {
        holds->fetch_sub(1, std::memory_order_release);
      });
  return {bytes, std::move(pin)};
}

absl::StatusOr<ResultBytes> WorkerConnection::RegionResult(std::string_view ref_bytes,
                                                           bool in_call_region,
                                                           bool borrow) {
  std::function<void()> release;
  if (in_call_region) {
    call_region_holds_->fetch_add(1, std::memory_order_relaxed);
    release = [holds = call_region_holds_] { holds->fetch_sub(1, std::memory_order_release); };
  } else {
    release = [page = status] {
      static_cast<WorkerStatusPage*>(page->data())
          ->result_region_busy.store(0, std::memory_order_release);
    };
  }
  absl::StatusOr<RegionRef> ref = ParseRegionRef(ref_bytes);
  absl::StatusOr<std::shared_ptr<RegionMapping>> map =
      !ref.ok()        ? ref.status()
      : in_call_region ? OwnMappingCovering(call_region_, *ref)
                       : result_region_.Covering(ref->offset, ref->length);
  if (!map.ok()) {
    release();
    return absl::DataLossError(
        absl::StrCat("protocol error from worker: ", map.status().message()));
  }
  std::string_view bytes((*map)->data() + ref->offset, ref->length);
  if (!borrow) {
    std::string copy(bytes);
    release();
    return ResultBytes(std::move(copy));
  }
  // The lease keeps the mapping (and the status page) alive and frees the
  // region (for the worker's next large result, or the pool's next large
  // call) when the bytes are let go.
  const char* base = (*map)->data();
  std::shared_ptr<const void> lease(
      base, [map = *std::move(map), release](const void*) { release(); });
  return ResultBytes(bytes, std::move(lease));
}

}  // namespace procpool::internal
