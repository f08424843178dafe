// Writing poolrun's output records and dead letters.
//
// Thread-compatible.

#ifndef PROCPOOL_CLI_FORMAT_H_
#define PROCPOOL_CLI_FORMAT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cli/flags.h"
#include "cli/io.h"
#include "cli/records.h"
#include "nlohmann/json.hpp"

namespace procpool::cli {

using Json = nlohmann::ordered_json;

// `v` as compact JSON; invalid UTF-8 in strings becomes U+FFFD.
std::string DumpJson(const Json& v);

// One output record per successful input record:
//  jsonl: the input object with the result added under --as (key order
//         kept); an input that is not an object becomes {"input": ..., AS: ...};
//         with --result-only, the result alone.
//  csv:   the input's columns plus an AS column (a header row first).
//         Strings are written as they are, other results as JSON.
//  lines: the result, strings as they are (line breaks inside become
//         spaces), other results as JSON.
class ResultWriter {
 public:
  ResultWriter(const PoolrunOptions& options, std::vector<std::string> csv_header,
               OutputFile* out);

  // csv: writes the header if the output is still empty.
  void Begin();
  void Write(const Record& record, const Json& result);

 private:
  void WriteCsvRow(const std::vector<std::string>& cells);

  const PoolrunOptions& options_;
  const std::vector<std::string> csv_header_;
  OutputFile* out_;
  std::string key_json_;  // --as as a JSON string
  std::string scratch_;
};

// The dead-letter line (with its newline) for a record that failed:
// {"record": N (1-based), "line": L, "input": "...", "error": "...",
//  "code": "UNKNOWN"}.
std::string DeadLetter(const Record& record, const absl::Status& error);

}  // namespace procpool::cli

#endif  // PROCPOOL_CLI_FORMAT_H_
