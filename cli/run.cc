#include "cli/run.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/batch.h"
#include "cli/batched.h"
#include "cli/checkpoint.h"
#include "cli/flags.h"
#include "cli/io.h"
#include "cli/job.h"
#include "cli/records.h"
#include "cli/typed.h"
#include "pool/pool.h"
#include "pool/runfiles.h"

namespace procpool::cli {
namespace {

std::atomic<int> g_stop{0};

// First SIGINT/SIGTERM: stop reading input, finish what is in flight.
// Second: leave at once (the last checkpoint keeps --resume correct).
extern "C" void OnSignal(int sig) {
  int expected = 0;
  if (!g_stop.compare_exchange_strong(expected, sig)) {
    static const char kMsg[] = "\npoolrun: stopping now\n";
    ssize_t r = ::write(STDERR_FILENO, kMsg, sizeof(kMsg) - 1);
    (void)r;
    ::_exit(128 + sig);
  }
  static const char kMsg[] =
      "\npoolrun: finishing the records in flight (Ctrl-C again to stop at once)\n";
  ssize_t r = ::write(STDERR_FILENO, kMsg, sizeof(kMsg) - 1);
  (void)r;
}

void Error(const std::string& message) {
  std::fprintf(stderr, "poolrun: %s\n", message.c_str());
}

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// Under `bazel run` the program runs in its runfiles, and relative paths
// the user typed are relative to $BUILD_WORKING_DIRECTORY.
std::string UserPath(const std::string& path) {
  if (path == "-" || path.empty() || path[0] == '/') return path;
  const char* wd = std::getenv("BUILD_WORKING_DIRECTORY");
  if (wd != nullptr && *wd != '\0') return absl::StrCat(wd, "/", path);
  return path;
}

// An existing file: as given, relative to the user's directory, or one of
// the repository's files in the runfiles (plugins, the sample data).
std::string FindInput(const std::string& path) {
  if (path == "-" || path.empty() || path[0] == '/') return path;
  const std::string user = UserPath(path);
  if (Exists(user)) return user;
  if (Exists(path)) return path;
  absl::StatusOr<std::string> runfile = FindRunfile(path);
  if (runfile.ok()) return *runfile;
  return user;
}

std::string RunId(const PoolrunOptions& o) {
  return absl::StrCat("plugins=", absl::StrJoin(o.plugins, ","), ";task=", o.task,
                      ";input=", o.input, ";format=", FormatName(o.format),
                      ";fields=", absl::StrJoin(o.fields, ","), ";as=", o.as,
                      ";result_only=", o.result_only ? 1 : 0);
}

std::string SupportedList() {
  std::vector<std::string> sigs;
  for (const SupportedTask& t : SupportedTasks()) sigs.push_back(t.signature);
  return absl::StrJoin(sigs, ", ");
}

// The adapter plugin poolrun loads into its workers: in its runfiles, or
// next to the poolrun executable.
std::string FindAdapter() {
  absl::StatusOr<std::string> runfile = FindRunfile("cli/libpoolrun_adapter.so");
  if (runfile.ok()) return *runfile;
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    std::string dir(self, static_cast<size_t>(n));
    dir.resize(dir.find_last_of('/') + 1);
    const std::string beside = dir + "libpoolrun_adapter.so";
    if (Exists(beside)) return beside;
  }
  return std::string();
}

std::string Absolute(const std::string& path) {
  char* real = ::realpath(path.c_str(), nullptr);
  if (real == nullptr) return path;
  std::string out(real);
  std::free(real);
  return out;
}

const SupportedTask* FindSupported(const std::string& signature) {
  for (const SupportedTask& t : SupportedTasks()) {
    if (t.signature == signature) return &t;
  }
  return nullptr;
}

}  // namespace

int RunPoolrun(const std::vector<std::string>& args) {
  absl::StatusOr<PoolrunOptions> parsed = ParseFlags(args);
  if (!parsed.ok()) {
    Error(std::string(parsed.status().message()));
    return kExitUsage;
  }
  PoolrunOptions o = *std::move(parsed);
  if (o.help) {
    std::fputs(Usage().c_str(), stdout);
    return kExitOk;
  }

  // Signals: the pool's threads inherit a mask that blocks SIGINT and
  // SIGTERM, so only this thread takes them (and only its reads see EINTR).
  // Workers are spawned with default dispositions in their own process
  // group, so a terminal's Ctrl-C does not reach them.
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  struct sigaction sa {};
  sa.sa_handler = &OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocked read of stdin must notice
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  // What the checkpoint calls this run: the command as typed, so that the
  // same command resumes whether it runs under `bazel run` or not.
  const std::string run_id = RunId(o);

  // Paths (absolute: the adapter finds the plugin the workers loaded by it).
  for (std::string& p : o.plugins) p = Absolute(FindInput(p));
  const std::string input_path = FindInput(o.input);
  const std::string output_path = UserPath(o.output);
  std::string errors_path = UserPath(o.errors);
  // Checkpoints only for regular files: /dev/null or a FIFO cannot be cut
  // back to a checkpoint.
  struct stat out_stat {};
  const bool output_is_file =
      o.output != "-" &&
      (::stat(output_path.c_str(), &out_stat) != 0 || S_ISREG(out_stat.st_mode));
  const std::string checkpoint_path =
      output_is_file ? output_path + ".poolrun-checkpoint" : std::string();
  if (o.resume && !output_is_file) {
    Error(absl::StrCat("--resume needs --output to be a regular file; ", output_path,
                       " is not"));
    return kExitUsage;
  }
  if (o.errors.empty()) {
    errors_path = output_is_file ? output_path + ".errors.jsonl" : "-";
  }
  if (!checkpoint_path.empty() && (errors_path == output_path || input_path == output_path)) {
    Error("--output, --errors and --input must be different files");
    return kExitUsage;
  }

  absl::StatusOr<LineReader> lines;
  if (!o.list_tasks) {
    lines = LineReader::Open(input_path, &g_stop);
    if (!lines.ok()) {
      Error(std::string(lines.status().message()));
      return kExitUsage;
    }
  }

  // JSON Lines and plain lines go to the workers raw, in batches, through
  // the adapter plugin (cli/adapter.h); CSV is parsed here.
  const std::string adapter = o.format == Format::kCsv ? std::string() : FindAdapter();
  const bool batched = !adapter.empty();
  if (o.format != Format::kCsv && !batched) {
    Error("libpoolrun_adapter.so not found beside poolrun or in its runfiles; every record "
          "is parsed by poolrun itself (slower)");
  }

  // The pool.
  PoolOptions po;
  po.max_workers = o.workers;
  po.plugins = o.plugins;
  if (batched) po.plugins.insert(po.plugins.begin(), adapter);
  // The batches' progress file: the workers open it in their initializer,
  // before they are sandboxed (a sandboxed worker may not open it). Without
  // it a crash cannot be blamed on one record; the batch then runs again
  // record by record, which still isolates it.
  // The input file too, when it is a regular file: a worker reads a huge
  // record from it rather than receive it (BatchRequest::from_file).
  std::optional<ProgressSlots> progress;
  if (batched) {
    if (absl::StatusOr<ProgressSlots> p = ProgressSlots::Create(); p.ok()) {
      progress.emplace(*std::move(p));
    }
    struct stat st;
    const std::string input_for_workers =
        input_path != "-" && ::stat(input_path.c_str(), &st) == 0 && S_ISREG(st.st_mode)
            ? Absolute(input_path)
            : std::string();
    po.initializer =
        Initializer::Of(TaskRef<int(std::string, std::string)>{kOpenFilesTaskName},
                        progress.has_value() ? progress->path() : std::string(), input_for_workers);
  }
  if (o.zygote) po.start_method = StartMethod::kZygote;
  po.sandbox = o.sandbox;
  po.limits.memory_bytes = o.memory_limit_bytes;  // --memory-limit
  for (const std::string& p : o.sandbox_read) po.sandbox_paths.push_back({UserPath(p), false});
  for (const std::string& p : o.sandbox_write) po.sandbox_paths.push_back({UserPath(p), true});
  // A record up to --max-record-bytes travels, and its output line (the
  // record and the result) comes back, in one frame each.
  po.max_frame_bytes = std::max<size_t>(
      po.max_frame_bytes,
      std::min<uint64_t>(3 * o.max_record_bytes + (uint64_t{64} << 20), (uint64_t{4} << 30) - 4096));
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(po);
  pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
  if (!pool.ok()) {
    Error(absl::StrCat("cannot start the pool: ", pool.status().message(),
                       o.sandbox ? " (--no-sandbox runs the workers unconfined)" : ""));
    return kExitUsage;
  }

  std::vector<TaskDescription> tasks = pool->Tasks();
  if (batched) {
    std::erase_if(tasks, [](const TaskDescription& t) {
      return t.name == kBatchTaskName || t.name == kOpenFilesTaskName;
    });
  }
  if (o.list_tasks) {
    for (const TaskDescription& t : tasks) {
      const SupportedTask* s = FindSupported(t.signature);
      std::printf("%-24s %-48s %s\n", t.name.c_str(), t.signature.c_str(),
                  s != nullptr ? "" : "(poolrun cannot call this signature)");
    }
    return kExitOk;
  }
  const TaskDescription* desc = nullptr;
  for (const TaskDescription& t : tasks) {
    if (t.name == o.task) desc = &t;
  }
  if (desc == nullptr) {
    std::vector<std::string> names;
    for (const TaskDescription& t : tasks) names.push_back(t.name);
    Error(absl::StrCat("unknown task '", o.task, "': ", absl::StrJoin(o.plugins, ", "),
                       " registers ", names.empty() ? "no tasks" : absl::StrJoin(names, ", ")));
    return kExitUsage;
  }
  const SupportedTask* supported = FindSupported(desc->signature);
  if (supported == nullptr) {
    Error(absl::StrCat("task '", o.task, "' has the signature ", desc->signature,
                       ", which poolrun cannot call. It calls tasks taking one to three "
                       "strings or one number, returning a string, bool, number or vector: ",
                       SupportedList()));
    return kExitUsage;
  }
  const size_t given = o.fields.empty() ? 1 : o.fields.size();
  if (given != supported->arity) {
    Error(absl::StrCat("task '", o.task, "' (", desc->signature, ") takes ", supported->arity,
                       " argument", supported->arity == 1 ? "" : "s", "; give ",
                       supported->arity, " --field option", supported->arity == 1 ? "" : "s",
                       " (one per argument, in order)",
                       o.format == Format::kLines ? " with --format jsonl or csv" : ""));
    return kExitUsage;
  }

  absl::StatusOr<std::unique_ptr<RecordReader>> reader =
      RecordReader::Create(o, *std::move(lines), /*frame_only=*/batched);
  if (!reader.ok()) {
    Error(std::string(reader.status().message()));
    return kExitUsage;
  }

  // Resume.
  std::optional<Checkpoint> resumed;
  if (o.resume) {
    absl::StatusOr<std::optional<Checkpoint>> c = LoadCheckpoint(checkpoint_path);
    if (!c.ok()) {
      Error(std::string(c.status().message()));
      return kExitUsage;
    }
    if (!c->has_value()) {
      Error(absl::StrCat("no checkpoint at ", checkpoint_path,
                         "; starting from the beginning"));
    } else if ((*c)->run != run_id) {
      Error(absl::StrCat("the checkpoint ", checkpoint_path,
                         " belongs to another command (", (*c)->run,
                         "); rerun that command with --resume, or run without --resume "
                         "to start over"));
      return kExitUsage;
    } else if (absl::StatusOr<std::string> change =
                   (*c)->has_input ? InputChange(input_path, (*c)->input) : std::string();
               !change.ok() || !change->empty()) {
      Error(change.ok()
                ? absl::StrCat("the input ", input_path,
                               " is not the one the checkpoint was made against: ", *change,
                               ". Resuming would mix two inputs in ", output_path,
                               "; run without --resume to start over")
                : std::string(change.status().message()));
      return kExitUsage;
    } else if ((*c)->complete) {
      std::fprintf(stderr,
                   "poolrun: %s is already complete (%llu written, %llu failed); nothing to "
                   "do\n",
                   output_path.c_str(), static_cast<unsigned long long>((*c)->succeeded),
                   static_cast<unsigned long long>((*c)->failed));
      return (*c)->failed > 0 ? kExitSomeFailed : kExitOk;
    } else {
      resumed = **c;
    }
  }

  absl::StatusOr<OutputFile> out =
      OutputFile::Open(output_path, resumed ? resumed->output_bytes : 0, STDOUT_FILENO);
  if (!out.ok()) {
    Error(std::string(out.status().message()));
    return kExitUsage;
  }
  absl::StatusOr<OutputFile> errors =
      OutputFile::Open(errors_path, resumed ? resumed->errors_bytes : 0, STDERR_FILENO);
  if (!errors.ok()) {
    Error(std::string(errors.status().message()));
    return kExitUsage;
  }

  Job job(o, *std::move(reader), *std::move(out), *std::move(errors), checkpoint_path, run_id,
          std::move(resumed), &g_stop);
  job.set_input_identity(IdentifyInput(input_path));
  int code;
  if (batched) {
    BatchJob config;
    config.plugin = desc->plugin;
    config.task = desc->name;
    config.signature = desc->signature;
    config.format = static_cast<int32_t>(o.format);
    config.fields = o.fields;
    config.as = o.as;
    config.result_only = o.result_only;
    config.max_depth = o.max_depth;
    code = RunBatched(*pool, job, o, std::move(config), std::move(progress));
  } else {
    code = supported->run(*pool, job, o);
  }
  pool->Shutdown(/*wait=*/true);
  return code;
}

}  // namespace procpool::cli
