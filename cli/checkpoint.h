// poolrun's checkpoint: which input records are done (written to the output
// or the dead letters) and how many bytes of each file hold them, saved
// atomically so that --resume can cut the files back to that point and go
// on without duplicating or losing a record.
//
// Thread-compatible.

#ifndef PROCPOOL_CLI_CHECKPOINT_H_
#define PROCPOOL_CLI_CHECKPOINT_H_

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace procpool::cli {

// A set of record numbers kept as "all below prefix()" plus the few done
// out of order beyond it (results complete out of order, malformed records
// are settled as soon as they are read).
class DoneSet {
 public:
  // {0, ..., prefix - 1} and `beyond`.
  static DoneSet FromParts(uint64_t prefix, const std::vector<uint64_t>& beyond);

  void Add(uint64_t n);
  bool Contains(uint64_t n) const { return n < prefix_ || beyond_.count(n) > 0; }
  uint64_t prefix() const { return prefix_; }
  const std::set<uint64_t>& beyond() const { return beyond_; }
  uint64_t size() const { return prefix_ + beyond_.size(); }

 private:
  uint64_t prefix_ = 0;
  std::set<uint64_t> beyond_;
};

struct Checkpoint {
  // What run this is (plugin, task, input, format, fields, --as...): a
  // checkpoint of another run is refused.
  std::string run;
  DoneSet done;
  uint64_t output_bytes = 0;
  uint64_t errors_bytes = 0;
  uint64_t succeeded = 0;
  uint64_t failed = 0;
  bool complete = false;  // the run reached the end of its input
};

// Reads the checkpoint at `path`: nullopt if there is none; kDataLoss if it
// does not parse.
absl::StatusOr<std::optional<Checkpoint>> LoadCheckpoint(const std::string& path);

// Writes `c` to `path` atomically and durably (a temporary file, fsync,
// rename, fsync of the directory). Errors name the file.
absl::Status SaveCheckpoint(const std::string& path, const Checkpoint& c);

}  // namespace procpool::cli

#endif  // PROCPOOL_CLI_CHECKPOINT_H_
