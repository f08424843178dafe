#include "cli/flags.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace procpool::cli {

const char* FormatName(Format f) {
  switch (f) {
    case Format::kJsonl:
      return "jsonl";
    case Format::kCsv:
      return "csv";
    case Format::kLines:
      return "lines";
  }
  return "?";
}

std::string Usage() {
  return R"(poolrun: apply a plugin task to every record of a file, in parallel.

Usage:
  poolrun --plugin PATH --task NAME [options]

Example (the text plugin over the sample data set):
  poolrun --plugin plugins/text/libtext.so --task normalize \
          --input data/web_sample.jsonl --field text --output clean.jsonl

Each input record becomes one call of the task in a worker process. Results
are written in input order (one output record per input record); a record
that fails (the task threw, its worker crashed, it timed out, or the record
itself is malformed) goes to the dead-letter file instead, and the run goes
on. Nothing but output is written to stdout.

Required:
  --plugin PATH        plugin shared object (lib<name>.so); repeatable
  --task NAME          task to run (see --list-tasks)

Input and output:
  --input FILE|-       records to read (default: - = stdin); streamed, so
                       files of any size use the same memory. The workers
                       read a named file's records from it themselves
  --output FILE|-      where results go (default: - = stdout)
  --format F           jsonl, csv or lines (default: from the input's
                       extension, .jsonl/.ndjson/.json -> jsonl, .csv -> csv,
                       otherwise lines). Output uses the same format.
  --field NAME         the record field passed to the task; give it once per
                       task argument, in order. jsonl: a top-level key, or a
                       JSON pointer such as /meta/title. csv: a header column.
                       Without --field the task gets the whole record (lines:
                       the line; jsonl: the value if it is a string, else its
                       JSON text; csv: the only column).
  --as NAME            key (jsonl) or column (csv) of the result (default:
                       the task name)
  --result-only        jsonl: write only the result, not the input record
  --errors FILE|-      dead-letter file, JSON Lines (default: OUTPUT.errors.jsonl
                       when --output is a file, else stderr). One line per
                       failed record: {"record", "line", "input", "error",
                       "code"}.
  --unordered          write results as they complete, not in input order

Pool:
  --workers N          worker processes (default: one per core)
  --timeout D          longest one record may run, e.g. 500ms, 10s, 2m; the
                       worker is stopped and the record dead-lettered
  --retries N          rerun a record whose worker crashed up to N times
  --chunksize N        records sent to a worker at once (default: automatic;
                       jsonl and lines: batches of about 20 ms of work)
  --window N           csv: records read ahead of the output (default:
                       automatic, about 16 MiB of records); jsonl and lines:
                       batches in flight (default: 3 per worker)
  --memory-limit SIZE  most memory one worker may use, e.g. 512M or 2G (K, M,
                       G are binary units; at least 16M). A record whose task
                       goes over it is a dead letter (RESOURCE_EXHAUSTED, the
                       error naming the limit and the peak) and its worker is
                       replaced. A memory cgroup per worker where poolrun may
                       make one (as root), else RLIMIT_DATA.
  --start-method M     how workers start: spawn (default; each worker loads
                       the plugins itself) or zygote (one template process
                       loads them once and forks each worker from it: a
                       worker replaced after a crash serves again without
                       loading the plugins again)

Sandbox (docs/SECURITY.md): workers run the plugin over untrusted data, so
by default each is sandboxed once the plugins are loaded: a seccomp filter
(no programs run, no processes forked, no network sockets, no ptrace, no
signals to other processes) and Landlock: it may read only the system's
libraries (/usr, /lib), the plugins' directories, the paths below and the
input file (opened before the sandbox: the workers read a named file's
records there), and write nowhere. A call the sandbox denies fails inside
the task (EPERM or EACCES), which dead-letters its record at worst.
  --no-sandbox         run the workers unconfined (plugins that need more
                       than the options below, e.g. the network)
  --sandbox-path PATH  a file or directory the workers may also read;
                       repeatable
  --sandbox-write-path PATH
                       a directory the workers may also write; repeatable

Limits (a record over one is a dead letter with code RESOURCE_EXHAUSTED):
  --max-record-bytes N the longest record, in bytes (default and most:
                       1073741824, 1 GiB; a CSV record: each of its lines)
  --max-depth N        jsonl: the deepest nesting of arrays and objects in a
                       record (default 1000)

Runs:
  --resume             continue an interrupted run (Ctrl-C, kill, crash) of
                       the same command: records already written are kept
                       and not redone. Needs --output FILE; progress is
                       checkpointed in OUTPUT.poolrun-checkpoint.
  --progress           always draw the progress bar on stderr
  --no-progress        never draw it (default: only when stderr is a terminal)
  --list-tasks         list the plugins' tasks and whether poolrun can run them
  --help               this text

Tasks poolrun can call take one to three std::string arguments (one per
--field), or one int, int64_t or double (parsed from the field), and return
std::string, bool, int, int64_t, uint64_t, double or a std::vector of
std::string, int, int64_t or double.

Exit status: 0 every record succeeded; 1 some records were dead-lettered;
2 bad usage or setup (plugin, task, files); 3 an I/O error stopped the run;
130 interrupted by Ctrl-C (143 by SIGTERM): in-flight records were finished
and written, and --resume continues. A second Ctrl-C stops at once (the
checkpoint still makes --resume safe).
)";
}

namespace {

absl::Status Bad(absl::string_view flag, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(flag, ": ", why, " (see poolrun --help)"));
}

// ---- --memory-limit (PoolOptions::limits.memory_bytes) ----
// "1048576", "64K", "512M", "2G" (binary units); false when malformed or
// out of range.
bool ParseByteSize(absl::string_view text, uint64_t* bytes) {
  uint64_t unit = 1;
  if (!text.empty()) {
    switch (text.back()) {
      case 'K': case 'k': unit = uint64_t{1} << 10; break;
      case 'M': case 'm': unit = uint64_t{1} << 20; break;
      case 'G': case 'g': unit = uint64_t{1} << 30; break;
      default: break;
    }
    if (unit != 1) text.remove_suffix(1);
  }
  uint64_t n = 0;
  if (!absl::SimpleAtoi(text, &n) || n > (uint64_t{1} << 50) / unit) return false;
  *bytes = n * unit;
  return true;
}

}  // namespace

absl::StatusOr<PoolrunOptions> ParseFlags(const std::vector<std::string>& args) {
  PoolrunOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    std::string value;
    bool has_inline_value = false;
    if (!absl::StartsWith(flag, "--")) {
      return Bad(flag, "unexpected argument; every option is a --flag");
    }
    if (size_t eq = flag.find('='); eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_inline_value = true;
    }
    auto boolean = [&](bool* target) -> absl::Status {
      if (has_inline_value) return Bad(flag, "takes no value");
      *target = true;
      return absl::OkStatus();
    };
    auto take = [&]() -> absl::StatusOr<std::string> {
      if (has_inline_value) return value;
      if (i + 1 >= args.size()) return Bad(flag, "needs a value");
      return args[++i];
    };
    auto number = [&](auto* target, long long min) -> absl::Status {
      absl::StatusOr<std::string> v = take();
      if (!v.ok()) return v.status();
      long long n = 0;
      if (!absl::SimpleAtoi(*v, &n) || n < min) {
        return Bad(flag, absl::StrCat("'", *v, "' is not an integer >= ", min));
      }
      *target = static_cast<std::remove_pointer_t<decltype(target)>>(n);
      return absl::OkStatus();
    };
    absl::Status s;
    if (flag == "--help" || flag == "-h") {
      s = boolean(&o.help);
    } else if (flag == "--list-tasks") {
      s = boolean(&o.list_tasks);
    } else if (flag == "--unordered") {
      s = boolean(&o.unordered);
    } else if (flag == "--resume") {
      s = boolean(&o.resume);
    } else if (flag == "--result-only") {
      s = boolean(&o.result_only);
    } else if (flag == "--progress") {
      bool b = false;
      s = boolean(&b);
      o.progress = ProgressMode::kAlways;
    } else if (flag == "--no-sandbox") {
      bool b = false;
      s = boolean(&b);
      o.sandbox = false;
    } else if (flag == "--no-progress") {
      bool b = false;
      s = boolean(&b);
      o.progress = ProgressMode::kNever;
    } else if (flag == "--workers") {
      s = number(&o.workers, 0);
    } else if (flag == "--retries") {
      s = number(&o.retries, 0);
    } else if (flag == "--chunksize") {
      s = number(&o.chunksize, 0);
    } else if (flag == "--window") {
      s = number(&o.window, 0);
    } else if (flag == "--max-depth") {
      s = number(&o.max_depth, 1);
      // Deeper values could overflow a stack where JSON is written out.
      if (s.ok() && o.max_depth > 10000) s = Bad(flag, "at most 10000");
    } else if (flag == "--max-record-bytes") {
      s = number(&o.max_record_bytes, 1);
      if (s.ok() && o.max_record_bytes > (uint64_t{1} << 30)) {
        s = Bad(flag, "at most 1073741824 (1 GiB)");
      }
    } else {
      absl::StatusOr<std::string> v = take();
      if (!v.ok()) return v.status();
      if (flag == "--plugin") {
        o.plugins.push_back(*v);
      } else if (flag == "--sandbox-path" || flag == "--sandbox-write-path") {
        if (v->empty()) return Bad(flag, "the path is empty");
        (flag == "--sandbox-path" ? o.sandbox_read : o.sandbox_write).push_back(*v);
      } else if (flag == "--start-method") {
        if (*v != "spawn" && *v != "zygote") return Bad(flag, "spawn or zygote");
        o.zygote = *v == "zygote";
      } else if (flag == "--task") {
        o.task = *v;
      } else if (flag == "--input") {
        o.input = *v;
      } else if (flag == "--output") {
        o.output = *v;
      } else if (flag == "--errors") {
        o.errors = *v;
      } else if (flag == "--field") {
        if (v->empty()) return Bad(flag, "the field name is empty");
        o.fields.push_back(*v);
      } else if (flag == "--as") {
        if (v->empty()) return Bad(flag, "the name is empty");
        o.as = *v;
      } else if (flag == "--format") {
        o.format_given = true;
        if (*v == "jsonl" || *v == "ndjson") {
          o.format = Format::kJsonl;
        } else if (*v == "csv") {
          o.format = Format::kCsv;
        } else if (*v == "lines") {
          o.format = Format::kLines;
        } else {
          return Bad(flag, absl::StrCat("'", *v, "' is not one of jsonl, csv, lines"));
        }
      } else if (flag == "--timeout") {
        absl::Duration d;
        if (!absl::ParseDuration(*v, &d) || d <= absl::ZeroDuration()) {
          return Bad(flag, absl::StrCat("'", *v, "' is not a positive duration such as 500ms, 10s, 2m"));
        }
        o.timeout = d;
      } else if (flag == "--memory-limit") {
        if (!ParseByteSize(*v, &o.memory_limit_bytes) ||
            o.memory_limit_bytes < (uint64_t{16} << 20)) {
          return Bad(flag, absl::StrCat("'", *v, "' is not a size of at least 16M, such as "
                                                 "512M or 2G"));
        }
      } else {
        return Bad(flag, "unknown option");
      }
    }
    if (!s.ok()) return s;
  }
  if (o.help) return o;
  if (o.plugins.empty()) return Bad("--plugin", "required: the plugin shared object to load");
  if (o.list_tasks) return o;
  if (o.task.empty()) return Bad("--task", "required: the task to run (see --list-tasks)");
  if (!o.format_given) {
    const std::string& in = o.input;
    if (absl::EndsWith(in, ".jsonl") || absl::EndsWith(in, ".ndjson") ||
        absl::EndsWith(in, ".json")) {
      o.format = Format::kJsonl;
    } else if (absl::EndsWith(in, ".csv")) {
      o.format = Format::kCsv;
    } else {
      o.format = Format::kLines;
    }
  }
  if (o.format == Format::kLines && !o.fields.empty()) {
    return Bad("--field", "lines input has no fields; use --format jsonl or csv");
  }
  if (o.fields.size() > 3) return Bad("--field", "at most three (tasks take up to three arguments)");
  if (o.result_only && o.format != Format::kJsonl) {
    return Bad("--result-only", "only for --format jsonl");
  }
  if (o.resume && o.output == "-") {
    return Bad("--resume", "needs --output FILE (stdout cannot be rewound)");
  }
  if (!o.sandbox && (!o.sandbox_read.empty() || !o.sandbox_write.empty())) {
    return Bad("--no-sandbox", "cannot be combined with --sandbox-path or --sandbox-write-path");
  }
  if (o.as.empty()) o.as = o.task;
  return o;
}

}  // namespace procpool::cli
