// Reading records for poolrun: JSON Lines (nlohmann-json), CSV (libcsv) or
// plain lines, each record with its number, its line and the task's
// arguments taken from its fields.
//
// Thread-compatible.

#ifndef PROCPOOL_CLI_RECORDS_H_
#define PROCPOOL_CLI_RECORDS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cli/flags.h"
#include "cli/io.h"

namespace procpool::cli {

struct Record {
  uint64_t number = 0;  // 0-based, counting every record (malformed too)
  uint64_t line = 0;    // 1-based line of the input where it starts
  std::string raw;      // its text (csv: its lines, which may be several)
  // The task's arguments, one per --field (or the whole record).
  std::vector<std::string> args;
  // csv: every field, for the output row.
  std::vector<std::string> fields;
  // jsonl: the record is an object, and whether it already has the result's
  // key (--as).
  bool json_object = false;
  bool has_result_key = false;
  // Not OK for a malformed record (bad JSON or CSV, a missing field): it is
  // never submitted and goes to the dead letters with this error.
  absl::Status error;
};

class RecordReader {
 public:
  // Reads records of `options.format` from `lines`. For csv, reads the
  // header now: kInvalidArgument if it is missing or malformed, or if a
  // --field is not one of its columns (the message lists them).
  static absl::StatusOr<std::unique_ptr<RecordReader>> Create(const PoolrunOptions& options,
                                                              LineReader lines);
  virtual ~RecordReader() = default;

  // The next record into *r. With `parse` false only its number and line are
  // set (a resumed run skipping records done before). Returns false at the
  // end. Errors are I/O errors reading the input; a malformed record is not
  // an error here (see Record::error).
  virtual absl::StatusOr<bool> Next(Record* r, bool parse) = 0;

  // csv: the header's columns; empty otherwise.
  const std::vector<std::string>& header() const { return header_; }
  const LineReader& lines() const { return lines_; }

 protected:
  explicit RecordReader(LineReader lines) : lines_(std::move(lines)) {}
  LineReader lines_;
  std::vector<std::string> header_;
};

}  // namespace procpool::cli

#endif  // PROCPOOL_CLI_RECORDS_H_
