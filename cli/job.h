// Job: the type-independent part of a poolrun run. It feeds records to the
// pool's map (through the argument ranges in typed.h), writes each result
// or dead letter as it comes back, draws progress, checkpoints, and sums up.
//
// Not thread-safe: everything runs on the thread that iterates the map (the
// map reads its inputs on that thread too).

#ifndef PROCPOOL_CLI_JOB_H_
#define PROCPOOL_CLI_JOB_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cli/checkpoint.h"
#include "cli/flags.h"
#include "cli/format.h"
#include "cli/io.h"
#include "cli/records.h"

namespace procpool::cli {

// Exit codes (see Usage()).
inline constexpr int kExitOk = 0;
inline constexpr int kExitSomeFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitIo = 3;

class Job {
 public:
  // `checkpoint_path` empty: no checkpoints (output to stdout). `resumed`:
  // the checkpoint this run continues from (its records are skipped).
  // `stop`: set (to the signal number) by a signal handler to end the run
  // after the records in flight.
  Job(const PoolrunOptions& options, std::unique_ptr<RecordReader> reader, OutputFile out,
      OutputFile errors, std::string checkpoint_path, std::string run_id,
      std::optional<Checkpoint> resumed, const std::atomic<int>* stop);

  // The input's identity, saved in checkpoints (see InputIdentity). Call
  // before Begin().
  void set_input_identity(const InputIdentity& id) { input_id_ = id; }

  // Writes the csv header if needed and the first checkpoint.
  absl::Status Begin();

  // ---- The input side, called by the argument ranges ----

  // True when no record is left to submit: the input ended, a stop was
  // requested, or an error stopped the run. Otherwise Current() is the next
  // record. Malformed records, records that fail `validator`, and records
  // done by an earlier run are dealt with here and never submitted.
  bool AtEnd();
  const Record& Current() const { return current_; }
  // Current() was handed to the map as its next item.
  void Submitted();

  // The map window to use when --window is not given: reads the first
  // records ahead (they are submitted later, in order) and limits the
  // window so that about kWindowBytes of records are in flight. 0 (the
  // pool's automatic window) when records are small enough for any window.
  // Call after set_validator() and before the map starts.
  size_t SuggestWindow(int workers);
  static constexpr size_t kWindowBytes = size_t{16} << 20;
  // Checks a record's arguments convert to the task's types.
  void set_validator(std::function<absl::Status(const Record&)> v) { validator_ = std::move(v); }

  // ---- The output side ----

  // The map's item `map_index` finished.
  void Complete(uint64_t map_index, absl::StatusOr<Json> result);

  // ---- Records in batches (cli/batched.h), instead of the calls above ----

  // Moves the next record to submit into *r (see AtEnd()); false at the end.
  bool TakeNext(Record* r);
  // Writes finished output lines of settled records.
  void WriteOutput(std::string_view lines);
  // `record`, whose output was written, succeeded; `empty` if its result
  // is an empty string.
  void Succeeded(const Record& record, bool empty);
  // `record` failed: a dead letter.
  void Fail(const Record& record, const absl::Status& error);
  // A line on stderr ("poolrun: " + what), above the progress bar.
  void Notice(const std::string& what);
  // Empty string results among those counted by Succeeded(..., false).
  void CountEmpty(uint64_t n) { empty_ += n; }
  // Redraws the progress bar and checkpoints, now and then. Cheap: looks
  // at the clock every 64 calls, or at once with `now`.
  void Tick(bool now = false);
  // Ends the run: flushes, checkpoints, prints the summary. Returns the exit
  // code. Shut the pool down first: the summary's CPU time of the workers
  // counts the workers this process has reaped.
  int Finish();

 private:
  absl::Status SaveCheckpointNow(bool complete);
  void DrawProgress(bool final);
  void ClearProgress();

  const PoolrunOptions& options_;
  std::unique_ptr<RecordReader> reader_;
  OutputFile out_;
  OutputFile errors_;
  ResultWriter writer_;
  const std::string checkpoint_path_;
  const std::string run_id_;
  const std::atomic<int>* stop_;
  std::function<absl::Status(const Record&)> validator_;

  DoneSet done_;
  uint64_t records_read_ = 0;  // records the reader returned (numbers 0..n-1)
  uint64_t skipped_ = 0;       // done by an earlier run
  uint64_t succeeded_ = 0;     // totals, including earlier runs
  uint64_t failed_ = 0;
  uint64_t processed_now_ = 0; // settled by this run
  uint64_t empty_ = 0;         // succeeded with an empty string, this run
  // Reads the next record to submit into current_, settling the ones that
  // are skipped or malformed. False at the end of the input or on a stop.
  bool LoadNext();
  // Remembers where record `number` ends in the input, for checkpoints.
  void NoteEnd(uint64_t number);

  struct End {
    uint64_t number, bytes, hash;
  };
  std::deque<End> ends_;  // from the last record of the settled prefix on
  InputIdentity input_id_;
  std::optional<InputIdentity> resumed_input_;  // what a resumed run checks
  bool refused_ = false;  // the input is not the checkpoint's: exit 2

  Record current_;
  bool has_current_ = false;
  std::deque<Record> lookahead_;  // read by SuggestWindow, not yet submitted
  bool input_done_ = false;
  absl::Status fatal_;
  uint64_t next_map_index_ = 0;
  absl::flat_hash_map<uint64_t, Record> in_flight_;

  const bool draw_progress_;
  bool progress_drawn_ = false;
  const absl::Time start_;
  absl::Time last_draw_;
  absl::Time last_checkpoint_;
  uint64_t ticks_ = 0;
};

}  // namespace procpool::cli

#endif  // PROCPOOL_CLI_JOB_H_
