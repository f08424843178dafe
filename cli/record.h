// One input record of poolrun, as the readers frame it and the codec parses
// it. Pool-free: the worker-side adapter uses it too.
//
// Thread-compatible value type.

#ifndef PROCPOOL_CLI_RECORD_H_
#define PROCPOOL_CLI_RECORD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace procpool::cli {

struct Record {
  uint64_t number = 0;  // 0-based, counting every record (malformed too)
  uint64_t line = 0;    // 1-based line of the input where it starts
  std::string raw;      // its text (csv: its lines, which may be several)
  // Where `raw` starts in the input, when the input is a regular file and
  // `raw` is its bytes as they are there (jsonl and lines); else -1.
  int64_t file_offset = -1;
  // The task's arguments, one per --field (or the whole record).
  std::vector<std::string> args;
  // csv: every field, for the output row.
  std::vector<std::string> fields;
  // jsonl: the record is an object, and whether it already has the result's
  // key (--as).
  bool json_object = false;
  bool has_result_key = false;
  // Not OK for a malformed record (bad JSON or CSV, a missing field, over a
  // limit): it is never passed to the task and goes to the dead letters
  // with this error.
  absl::Status error;
};

}  // namespace procpool::cli

#endif  // PROCPOOL_CLI_RECORD_H_
