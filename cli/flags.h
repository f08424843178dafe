// poolrun's command line: what a run does, parsed from argv.
//
// Thread-compatible value types.

#ifndef PROCPOOL_CLI_FLAGS_H_
#define PROCPOOL_CLI_FLAGS_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace procpool::cli {

enum class Format { kJsonl, kCsv, kLines };

const char* FormatName(Format f);

enum class ProgressMode { kAuto, kAlways, kNever };

struct PoolrunOptions {
  std::vector<std::string> plugins;  // --plugin, at least one
  std::string task;                  // --task
  int workers = 0;                   // --workers; 0: one per hardware thread
  std::string input = "-";           // --input; "-" is stdin
  std::string output = "-";          // --output; "-" is stdout
  Format format = Format::kLines;    // --format (default: from the input's extension)
  bool format_given = false;
  std::vector<std::string> fields;   // --field, in order: the task's arguments
  std::string as;                    // --as: the result's key/column (default: task name)
  bool result_only = false;          // --result-only
  bool unordered = false;            // --unordered
  std::string errors;                // --errors; empty: the default (see Usage)
  absl::Duration timeout = absl::InfiniteDuration();  // --timeout, per record
  uint64_t memory_limit_bytes = 0;   // --memory-limit, per worker; 0: none
  int retries = 0;                   // --retries
  int chunksize = 0;                 // --chunksize; 0: automatic
  size_t window = 0;                 // --window; 0: automatic
  size_t max_depth = 1000;           // --max-depth: JSON nesting of a record
  uint64_t max_record_bytes = uint64_t{1} << 30;  // --max-record-bytes
  bool zygote = false;               // --start-method zygote
  bool sandbox = true;               // false with --no-sandbox
  std::vector<std::string> sandbox_read;   // --sandbox-path
  std::vector<std::string> sandbox_write;  // --sandbox-write-path
  bool resume = false;               // --resume
  ProgressMode progress = ProgressMode::kAuto;  // --progress / --no-progress
  bool list_tasks = false;           // --list-tasks
  bool help = false;                 // --help
};

// Parses argv (without argv[0]). Accepts "--flag value" and "--flag=value".
// kInvalidArgument names the flag and what is wrong with it. With --help or
// --list-tasks, required flags may be missing.
absl::StatusOr<PoolrunOptions> ParseFlags(const std::vector<std::string>& args);

// The --help text.
std::string Usage();

}  // namespace procpool::cli

#endif  // PROCPOOL_CLI_FLAGS_H_
