// procpool_worker: the process a pool spawns for each worker.
//
//   procpool_worker --fd=N --status-fd=M --parent=PID --max-frame=BYTES
//                   [plugin.so ...]
//
// Loads the plugins, says hello with their manifests on fd N, then runs the
// calls it receives, one at a time in arrival order, and answers with their
// results. Before each task it publishes the task's id in the shared status
// page (fd M), so that if the task kills the process the pool knows which
// task to blame. Exits on EOF (the pool closed its end or died) and, through
// PR_SET_PDEATHSIG, when the pool process dies while a task is running.

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "pool/internal/plugin_loader.h"
#include "pool/internal/shared_memory.h"
#include "pool/internal/unique_fd.h"
#include "pool/internal/wire.h"
#include "tasks/abi.h"

namespace procpool::internal {
namespace {

struct Args {
  int fd = -1;
  int status_fd = -1;
  pid_t parent = 0;
  size_t max_frame = kDefaultMaxFrameBytes;
  std::vector<std::string> plugins;
};

bool ParseArgs(int argc, char** argv, Args* out) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    auto value = [&](absl::string_view flag, auto* dst) {
      if (!absl::StartsWith(a, flag)) return false;
      return absl::SimpleAtoi(a.substr(flag.size()), dst);
    };
    int64_t parent = 0;
    if (value("--fd=", &out->fd) || value("--status-fd=", &out->status_fd) ||
        value("--max-frame=", &out->max_frame)) {
      continue;
    }
    if (value("--parent=", &parent)) {
      out->parent = static_cast<pid_t>(parent);
      continue;
    }
    if (absl::StartsWith(a, "--")) return false;
    out->plugins.emplace_back(a);
  }
  return out->fd >= 0 && out->status_fd >= 0 && out->parent > 0;
}

void AppendToString(void* out, const char* data, size_t len) {
  static_cast<std::string*>(out)->append(data, len);
}

uint64_t NowNs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

class Worker {
 public:
  Worker(UniqueFd sock, SharedMemory status, PluginSet plugins,
         size_t max_frame)
      : sock_(std::move(sock)),
        status_mem_(std::move(status)),
        page_(static_cast<WorkerStatusPage*>(status_mem_.data())),
        plugins_(std::move(plugins)),
        max_frame_(max_frame),
        decoder_(max_frame) {}

  int Serve() {
    while (true) {
      absl::StatusOr<std::optional<Frame>> frame = ReadFrame(sock_.get(), decoder_);
      if (!frame.ok()) {
        std::fprintf(stderr, "procpool_worker: %s\n",
                     frame.status().ToString().c_str());
        return 2;
      }
      if (!frame->has_value()) return 0;  // the pool closed the connection
      if ((*frame)->type != FrameType::kCalls) {
        std::fprintf(stderr, "procpool_worker: unexpected frame type %d\n",
                     static_cast<int>((*frame)->type));
        return 2;
      }
      absl::StatusOr<std::vector<CallMsg>> calls =
          DecodeMessage<std::vector<CallMsg>>((*frame)->payload, "calls");
      if (!calls.ok()) {
        std::fprintf(stderr, "procpool_worker: %s\n",
                     calls.status().ToString().c_str());
        return 2;
      }
      if (!RunBatch(*calls)) return 2;
    }
  }

 private:
  // Runs calls in order. Results go out at the end of the batch, or sooner
  // when a batch has been running for a while, so a caller waiting on an
  // early task of a long batch is not held up.
  bool RunBatch(std::vector<CallMsg>& calls) {
    uint64_t last_flush = NowNs();
    for (CallMsg& call : calls) {
      ResultMsg& r = results_.emplace_back();
      r.id = call.id;
      page_->running_task.store(call.id, std::memory_order_release);
      uint64_t t0 = NowNs();
      if (call.task >= plugins_.num_tasks()) {
        r.code = static_cast<uint8_t>(ResultCode::kUnknownTask);
        r.payload = absl::StrCat("worker has no task #", call.task);
      } else {
        const procpool_task_v1& t = plugins_.task(call.task);
        int code = t.invoke(t.ctx, call.args.data(), call.args.size(),
                            &r.payload, &AppendToString);
        r.code = static_cast<uint8_t>(code);
      }
      uint64_t t1 = NowNs();
      r.run_ns = t1 - t0;
      page_->running_task.store(0, std::memory_order_release);
      page_->tasks_done.fetch_add(1, std::memory_order_relaxed);
      if (r.payload.size() + 64 > max_frame_) {
        size_t size = r.payload.size();
        r.code = static_cast<uint8_t>(ResultCode::kException);
        r.payload.clear();
        serialize_internal::AppendArchive(
            &r.payload, std::string("procpool::ResultTooLarge"),
            absl::StrCat("the result of task '", plugins_.task(call.task).name,
                         "' is ", size, " bytes, over the frame limit of ",
                         max_frame_, " bytes"));
      }
      results_bytes_ += r.payload.size();
      // Free the arguments now: a batch may hold many large ones.
      std::string().swap(call.args);
      if (t1 - last_flush > 1'000'000 || results_bytes_ > (1u << 20)) {
        if (!Flush()) return false;
        last_flush = t1;
      }
    }
    return Flush();
  }

  bool Flush() {
    if (results_.empty()) return true;
    out_.clear();
    AppendFrame(&out_, FrameType::kResults, results_);
    results_.clear();
    results_bytes_ = 0;
    absl::Status s = WriteAll(sock_.get(), out_);
    if (out_.capacity() > (8u << 20)) std::string().swap(out_);
    if (!s.ok()) {
      // The pool is gone; nobody is left to tell.
      return false;
    }
    return true;
  }

  UniqueFd sock_;
  SharedMemory status_mem_;
  WorkerStatusPage* page_;
  PluginSet plugins_;
  size_t max_frame_;
  FrameDecoder decoder_;
  std::vector<ResultMsg> results_;
  size_t results_bytes_ = 0;
  std::string out_;
};

int Main(int argc, char** argv) {
  Args args;
  if (!ParseArgs(argc, argv, &args)) {
    std::fprintf(stderr,
                 "procpool_worker is started by a procpool pool, not by hand.\n"
                 "usage: procpool_worker --fd=N --status-fd=M --parent=PID "
                 "[--max-frame=BYTES] [plugin.so ...]\n");
    return 64;
  }
  // Die with the pool. The check after prctl closes the race with a parent
  // that died before it.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != args.parent) return 1;
  // A write to a closed socket should fail with EPIPE, not kill us silently.
  ::signal(SIGPIPE, SIG_IGN);

  UniqueFd sock(args.fd);
  absl::StatusOr<SharedMemory> status =
      SharedMemory::Map(UniqueFd(args.status_fd), kWorkerStatusPageSize);
  if (!status.ok()) {
    std::fprintf(stderr, "procpool_worker: %s\n",
                 status.status().ToString().c_str());
    return 2;
  }

  HelloMsg hello;
  hello.pid = static_cast<int32_t>(::getpid());
  absl::StatusOr<PluginSet> plugins = PluginSet::Load(args.plugins);
  if (!plugins.ok()) {
    hello.error_code = static_cast<uint32_t>(plugins.status().code());
    hello.error = std::string(plugins.status().message());
  } else {
    hello.plugins = plugins->manifests();
  }
  std::string out;
  AppendFrame(&out, FrameType::kHello, hello);
  if (!WriteAll(sock.get(), out).ok() || !plugins.ok()) return 1;

  Worker worker(std::move(sock), *std::move(status), *std::move(plugins),
                args.max_frame);
  return worker.Serve();
}

}  // namespace
}  // namespace procpool::internal

int main(int argc, char** argv) { return procpool::internal::Main(argc, argv); }
