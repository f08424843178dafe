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
#include "cli/record.h"

namespace procpool::cli {

class RecordReader {
 public:
  // Reads records of `options.format` from `lines`. For csv, reads the
  // header now: kInvalidArgument if it is missing or malformed, or if a
  // --field is not one of its columns (the message lists them).
  // With `frame_only` (jsonl and lines), records are only framed: Next()
  // sets their number, line and raw text, and leaves parsing them to the
  // workers. A record longer than --max-record-bytes is a malformed record
  // (kResourceExhausted) holding the first bytes of its text.
  static absl::StatusOr<std::unique_ptr<RecordReader>> Create(const PoolrunOptions& options,
                                                              LineReader lines,
                                                              bool frame_only = false);
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
