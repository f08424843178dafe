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

// What a checkpoint knows of the input it was made against: the file's
// identity when it is a regular file, and the hash (StreamHash, io.h) of
// the input's bytes up to the end of the last settled record, which any
// input, stdin too, can be checked against.
struct InputIdentity {
  bool regular_file = false;
  uint64_t device = 0;
  uint64_t inode = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  uint64_t settled_records = 0;  // records 0..n-1 hold every settled one
  uint64_t settled_bytes = 0;    // their bytes, from the start of the input
  uint64_t settled_hash = 0;     // StreamHash of those bytes
};

// The identity of the regular file `path` (settled_* left 0), or of
// nothing (regular_file false) for stdin, pipes and the like.
InputIdentity IdentifyInput(const std::string& path);

// How `path` differs from the input `made` was made against, or an empty
// string if it is the same: the same file unchanged, or a file whose first
// settled_bytes bytes hash the same (an input that grew, or was copied).
// Reads those bytes only when the file's identity changed.
absl::StatusOr<std::string> InputChange(const std::string& path, const InputIdentity& made);

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
  bool has_input = false;  // `input` is known (checkpoints of this version)
  InputIdentity input;
};

// Reads the checkpoint at `path`: nullopt if there is none; kDataLoss if it
// does not parse.
absl::StatusOr<std::optional<Checkpoint>> LoadCheckpoint(const std::string& path);

// Writes `c` to `path` atomically and durably (a temporary file, fsync,
// rename, fsync of the directory). Errors name the file.
absl::Status SaveCheckpoint(const std::string& path, const Checkpoint& c);

}  // namespace procpool::cli

#endif  // PROCPOOL_CLI_CHECKPOINT_H_
