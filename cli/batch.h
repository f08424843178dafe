// What poolrun and its worker-side adapter (cli/adapter.h) exchange: a batch
// of raw records goes to a worker, finished output lines come back, so that
// the per-record work (parsing, calling the task, encoding) runs in the
// workers and poolrun itself only frames lines and writes bytes.
// Pool-free: both sides include it.
//
// Thread-compatible value types, plus ProgressSlots (see there).

#ifndef PROCPOOL_CLI_BATCH_H_
#define PROCPOOL_CLI_BATCH_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/record.h"
#include "tasks/serialize.h"

namespace procpool::cli {

// The adapter's task, registered by libpoolrun_adapter.so.
inline constexpr char kBatchTaskName[] = "poolrun_batch";
// The adapter's initializer (PoolOptions::initializer): opens, while the
// worker may still open files, before the sandbox (docs/SECURITY.md), the
// ProgressSlots file (empty path: none) and the input file (empty: none;
// see BatchRequest::from_file). Returns 1 if the progress file opened,
// plus 2 if the input did: a batch goes without progress when it did not,
// and a record to read from an input that did not open fails.
inline constexpr char kOpenFilesTaskName[] = "poolrun_open_files";

// What every batch of a run shares.
struct BatchJob {
  std::string plugin;     // the absolute path of the plugin with the task
  std::string task;       // its name
  std::string signature;  // as its manifest spells it, e.g. "std::string(std::string)"
  int32_t format = 0;     // Format: kJsonl or kLines
  std::vector<std::string> fields;
  std::string as;         // the result's key
  bool result_only = false;
  uint64_t max_depth = 0;
  int64_t timeout_ns = 0;     // per record; 0: none
  std::string progress_path;  // ProgressSlots file; empty: none

  template <class Archive>
  void serialize(Archive& ar) {
    ar(plugin, task, signature, format, fields, as, result_only, max_depth, timeout_ns,
       progress_path);
  }
};

// Records a worker reads from the input file itself (see BatchRequest):
// the bytes [offset, offset + length) of the input, in which record k is
// [starts[k], starts[k] + lengths[k]); `hash` is the StreamHash of the
// records' bytes one after the other, as poolrun read them.
struct FileSpan {
  uint64_t offset = 0;
  uint64_t length = 0;  // 0: none
  uint64_t hash = 0;
  std::vector<uint64_t> starts;
  std::vector<uint64_t> lengths;

  template <class Archive>
  void serialize(Archive& ar) {
    ar(offset, length, hash, starts, lengths);
  }
};

// A record of at least this many bytes goes alone in its batch, so that
// poolrun holds it once while a worker reads it (docs/POOLRUN.md, "One
// huge record").
inline constexpr uint64_t kHugeRecordBytes = uint64_t{16} << 20;

struct BatchRequest {
  BatchJob job;
  uint64_t seq = 0;  // the batch's number in the run: its progress slot
  // The records, raw, without their newlines, when the request is built in
  // memory (tests call RunBatch with them).
  std::vector<std::string> records;
  // In a worker: the records as received, read in place from the request's
  // bytes (no copy; valid while the task runs). Used instead of `records`
  // when not empty.
  std::vector<std::string_view> received;
  // In poolrun: the records to send, read in place (not copied into
  // `records`); they must outlive the request's serialization.
  const Record* borrowed = nullptr;
  size_t borrowed_count = 0;
  // When its length is not 0: the batch's records, which the worker reads
  // from the input file (OpenFiles); `records` is then empty.
  FileSpan from_file;

  // The same bytes as cereal's for (job, seq, records), whichever holds them.
  template <class Archive>
  void save(Archive& ar) const {
    ar(job, seq);
    if (borrowed == nullptr) {
      ar(records);
    } else {
      ar(cereal::make_size_tag(static_cast<cereal::size_type>(borrowed_count)));
      for (size_t i = 0; i < borrowed_count; ++i) ar(borrowed[i].raw);
    }
    ar(from_file);
  }
  template <class Archive>
  void load(Archive& ar) {
    ar(job, seq, received, from_file);
  }
};

struct RecordFailure {
  uint32_t index = 0;  // in the batch
  int32_t code = 0;    // absl::StatusCode
  std::string message;

  template <class Archive>
  void serialize(Archive& ar) {
    ar(index, code, message);
  }
};

struct BatchReply {
  // One piece per record that succeeded, in batch order, back to back:
  // either its finished output line (with the newline), or, where
  // splice[k] is 1, only its result as JSON, which poolrun splices into the
  // record's text (a JSON object without the result's key): the record does
  // not travel back.
  std::string output;
  std::vector<uint64_t> lengths;
  std::vector<uint8_t> splice;
  std::vector<RecordFailure> failures;  // by increasing index
  uint32_t empty_results = 0;  // string results that are empty
  uint64_t busy_ns = 0;        // the batch's time in the worker
  // Why the record that was to be read from the input file (from_file)
  // could not be, or no longer read as poolrun read it (empty: it was
  // read). Then nothing ran, and poolrun sends it in the request.
  std::string unread;

  template <class Archive>
  void serialize(Archive& ar) {
    ar(output, lengths, splice, failures, empty_results, busy_ns, unread);
  }
};

// A small shared file through which the adapter says which record of a
// batch it is running and since when, so that when a worker dies the
// record that killed it is known (and whether it had run past --timeout).
// Batch `seq` uses slot seq % kSlots. Before each record the adapter stores
// the time it starts (CLOCK_MONOTONIC, ns), then ((seq + 1) << 24) | index.
// A later batch may reuse a slot; the seq in it tells them apart, and then
// no record is blamed.
//
// Thread-safe: slots are atomics in shared memory. The destructor unmaps
// (and, for the creator, closes) the file.
class ProgressSlots {
 public:
  static constexpr uint64_t kSlots = 4096;
  static constexpr uint64_t kMaxRecords = 1u << 24;

  struct Running {
    uint32_t index;     // in its batch
    int64_t start_ns;   // CLOCK_MONOTONIC
  };

  // Creates an unlinked file in /dev/shm (else $TMPDIR, else /tmp) and maps
  // it; path() names it through /proc for the workers.
  static absl::StatusOr<ProgressSlots> Create();
  // Maps the file a worker is given.
  static absl::StatusOr<ProgressSlots> Open(const std::string& path);

  ProgressSlots(ProgressSlots&& o) noexcept;
  ProgressSlots& operator=(ProgressSlots&&) = delete;
  ProgressSlots(const ProgressSlots&) = delete;
  ~ProgressSlots();

  const std::string& path() const { return path_; }
  void Set(uint64_t seq, uint32_t index, int64_t start_ns) {
    std::atomic<uint64_t>* slot = &slots_[2 * (seq % kSlots)];
    slot[1].store(static_cast<uint64_t>(start_ns), std::memory_order_relaxed);
    slot[0].store(((seq + 1) << 24) | index, std::memory_order_release);
  }
  // The record batch `seq` was running when last heard of, if its slot is
  // still its own.
  std::optional<Running> Get(uint64_t seq) const {
    const std::atomic<uint64_t>* slot = &slots_[2 * (seq % kSlots)];
    const uint64_t v = slot[0].load(std::memory_order_acquire);
    if ((v >> 24) != seq + 1) return std::nullopt;
    return Running{static_cast<uint32_t>(v & (kMaxRecords - 1)),
                   static_cast<int64_t>(slot[1].load(std::memory_order_relaxed))};
  }

  // CLOCK_MONOTONIC in nanoseconds.
  static int64_t NowNs();

 private:
  ProgressSlots(std::string path, int fd, std::atomic<uint64_t>* slots)
      : path_(std::move(path)), fd_(fd), slots_(slots) {}
  std::string path_;
  int fd_ = -1;
  std::atomic<uint64_t>* slots_ = nullptr;
};

}  // namespace procpool::cli

#endif  // PROCPOOL_CLI_BATCH_H_
