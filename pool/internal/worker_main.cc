// procpool_worker: the process a pool spawns for each worker. Its command
// line is a WorkerCommand (worker_command.h).
//
// Loads the plugins, says hello with their manifests on its socket, then
// runs the calls it receives and answers them (worker_loop.h). Exits on
// EOF (the pool closed its end or died) and, through PR_SET_PDEATHSIG, when
// the pool process dies while a task is running.
//
// With --max-tasks or --max-rss the worker retires itself (records why in
// the status page, sends its results and exits 0) after that many tasks or
// once its resident memory crosses the limit; the pool starts a new one.
// With --preload-task it runs that task once after loading the plugins,
// and with --init-task that one next, before saying hello; a failure is
// reported in the hello. With --zygote it is the template of
// StartMethod::kZygote instead (zygote.h): it loads the plugins, runs the
// preload, and forks workers on request, each going on from the
// initializer as a spawned worker does.
//
// With --sandbox it then confines itself (sandbox.h) before saying hello,
// records the layers in force in the status page, and reports a sandbox
// that cannot be put in force as a failed start.

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "pool/internal/malloc_tuning.h"
#include "pool/internal/plugin_loader.h"
#include "pool/internal/sandbox.h"
#include "pool/internal/shared_memory.h"
#include "pool/internal/unique_fd.h"
#include "pool/internal/wire.h"
#include "pool/internal/worker_command.h"
#include "pool/internal/worker_limits.h"
#include "pool/internal/worker_loop.h"
#include "pool/internal/zygote.h"
#include "tasks/abi.h"

namespace procpool::internal {
namespace {

// Runs a setup task (the initializer or the preload, `what`) once. Errors
// name it, where it ran and what went wrong.
absl::Status RunSetupTask(const PluginSet& plugins, absl::string_view what,
                          const std::string& name, uint64_t fingerprint,
                          const std::string& task_args, absl::string_view where_ran) {
  if (name.empty()) return absl::OkStatus();
  const procpool_task_v1* task = nullptr;
  for (size_t i = 0; i < plugins.num_tasks(); ++i) {
    if (name == plugins.task(i).name) task = &plugins.task(i);
  }
  std::string where = absl::StrCat(what, " '", name, "' in ", where_ran, " pid ", ::getpid());
  if (task == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(where, ": no plugin registers a task of that name"));
  }
  if (fingerprint != 0 && fingerprint != task->fingerprint) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": signature mismatch: the plugin defines ", task->signature));
  }
  std::string out;
  int code = task->invoke(task->ctx, task_args.data(), task_args.size(), &out,
                          &internal::AppendToString);
  if (code == PROCPOOL_INVOKE_OK) return absl::OkStatus();
  if (code == PROCPOOL_INVOKE_BAD_ARGS) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", out));
  }
  RemoteException e = DecodeException(out);
  return absl::UnknownError(absl::StrCat(where, " raised ", e.type, ": ", e.what));
}

// Loads the plugins and runs the preload, in a spawned worker or in the
// template (`where_ran`).
absl::StatusOr<PluginSet> LoadPlugins(const WorkerCommand& args, absl::string_view where_ran) {
  absl::StatusOr<PluginSet> plugins = PluginSet::Load(args.plugins);
  if (!plugins.ok()) return plugins;
  absl::Status s = RunSetupTask(*plugins, "preload", args.preload_task, args.preload_fingerprint,
                                args.preload_args, where_ran);
  if (!s.ok()) return s;
  return plugins;
}

// Confines this worker as --sandbox asks; errors name the step that failed.
absl::Status Sandbox(const WorkerCommand& args, WorkerStatusPage* page) {
  if (!args.sandbox) return absl::OkStatus();
  SandboxConfig config;
  config.kill_on_denied = args.sandbox_stop_on_denied;
  config.plugins = args.plugins;
  config.read_paths = args.sandbox_read;
  config.write_paths = args.sandbox_write;
  config.max_file_bytes = args.sandbox_max_file_bytes;
  config.max_processes = args.sandbox_max_processes;
  config.network_namespace = args.sandbox_netns;
  DeniedCallRecord denied{&page->denied_syscall, page->denied_syscall_name,
                          sizeof(page->denied_syscall_name)};
  absl::StatusOr<uint32_t> layers = ApplySandbox(config, denied);
  if (!layers.ok()) {
    return absl::Status(layers.status().code(),
                        absl::StrCat("sandbox of worker pid ", ::getpid(), ": ",
                                     layers.status().message()));
  }
  page->sandbox_layers.store(*layers, std::memory_order_release);
  return absl::OkStatus();
}

// Dies with the pool: PR_SET_PDEATHSIG, and the check after it closes the
// race with a parent that died before it. False if the parent is gone.
bool TieToPool(const WorkerCommand& args) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  return ::getppid() == args.parent;
}

// A worker from its start to its end: `loaded` holds the plugins (preload
// run) when it was forked from a template, else it loads them itself. Then
// the initializer, the sandbox, the hello, and the tasks.
int RunWorker(const WorkerCommand& args, PluginSet* loaded) {
  if (!TieToPool(args)) return 1;
  // A write to a closed socket should fail with EPIPE, not kill us silently.
  ::signal(SIGPIPE, SIG_IGN);

  UniqueFd sock(args.fd);
  absl::StatusOr<SharedMemory> status =
      SharedMemory::Map(UniqueFd(args.status_fd), kWorkerStatusMemoryBytes);
  if (!status.ok()) {
    std::fprintf(stderr, "procpool_worker: %s\n",
                 status.status().ToString().c_str());
    return 2;
  }

  HelloMsg hello;
  hello.pid = static_cast<int32_t>(::getpid());
  UniqueFd statm;
  if (args.max_rss > 0) statm.Reset(::open("/proc/self/statm", O_RDONLY | O_CLOEXEC));
  absl::StatusOr<PluginSet> plugins =
      loaded != nullptr ? absl::StatusOr<PluginSet>(std::move(*loaded))
                        : LoadPlugins(args, "worker");
  if (!plugins.ok()) {
    hello.error_code = static_cast<uint32_t>(plugins.status().code());
    hello.error = std::string(plugins.status().message());
  } else {
    hello.plugins = plugins->manifests();
    absl::Status s = RunSetupTask(*plugins, "initializer", args.init_task, args.init_fingerprint,
                                  args.init_args, "worker");
    if (s.ok()) {
      s = ApplyWorkerLimits({args.limit_data, args.limit_cpu_ms, args.limit_files},
                            static_cast<WorkerStatusPage*>(status->data()));
    }
    if (s.ok()) s = Sandbox(args, static_cast<WorkerStatusPage*>(status->data()));
    if (!s.ok()) {
      hello.error_code = static_cast<uint32_t>(s.code());
      hello.error = std::string(s.message());
      hello.plugins.clear();
    }
  }
  std::string out;
  AppendFrame(&out, FrameType::kHello, hello);
  if (!WriteAll(sock.get(), out).ok() || !hello.error.empty()) return 1;

  return ServeCalls(std::move(sock), *std::move(status), *std::move(plugins), args,
                    std::move(statm));
}

// The template of StartMethod::kZygote (zygote.h): loads the plugins, runs
// the preload, then forks workers that go on in RunWorker.
int RunTemplate(const WorkerCommand& args) {
  if (!TieToPool(args)) return 1;
  absl::StatusOr<PluginSet> plugins = LoadPlugins(args, "worker template");
  return ServeAsTemplate(UniqueFd(args.fd), plugins.status(),
                         [&plugins](const WorkerCommand& worker) {
                           return RunWorker(worker, &*plugins);
                         });
}

int Main(int argc, char** argv) {
  RetainLargeBuffers();  // payloads reuse memory instead of fresh pages
  absl::StatusOr<WorkerCommand> parsed = WorkerCommand::Parse(argc, argv);
  if (!parsed.ok()) {
    std::fprintf(stderr,
                 "procpool_worker is started by a procpool pool, not by hand: %s\n",
                 std::string(parsed.status().message()).c_str());
    return 64;
  }
  int code = parsed->zygote ? RunTemplate(*parsed) : RunWorker(*parsed, nullptr);
  // Leave without running plugins' static destructors or dlclose(): the
  // pool reads our exit status, and a plugin's teardown must not change it.
  std::fflush(stdout);
  std::fflush(stderr);
  ::_exit(code);
}

}  // namespace
}  // namespace procpool::internal

int main(int argc, char** argv) { return procpool::internal::Main(argc, argv); }
