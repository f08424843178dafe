#include "cli/job.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace procpool::cli {
namespace {

std::string Thousands(uint64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

std::string Clock(absl::Duration d) {
  const int64_t s = absl::ToInt64Seconds(d);
  if (s >= 3600) return absl::StrFormat("%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
  return absl::StrFormat("%d:%02d", s / 60, s % 60);
}

void WriteStderr(const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::write(STDERR_FILENO, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

bool WantProgress(ProgressMode mode) {
  switch (mode) {
    case ProgressMode::kAlways:
      return true;
    case ProgressMode::kNever:
      return false;
    case ProgressMode::kAuto:
      return ::isatty(STDERR_FILENO) == 1;
  }
  return false;
}

}  // namespace

Job::Job(const PoolrunOptions& options, std::unique_ptr<RecordReader> reader, OutputFile out,
         OutputFile errors, std::string checkpoint_path, std::string run_id,
         std::optional<Checkpoint> resumed, const std::atomic<int>* stop)
    : options_(options),
      reader_(std::move(reader)),
      out_(std::move(out)),
      errors_(std::move(errors)),
      writer_(options, reader_->header(), &out_),
      checkpoint_path_(std::move(checkpoint_path)),
      run_id_(std::move(run_id)),
      stop_(stop),
      draw_progress_(WantProgress(options.progress)),
      start_(absl::Now()),
      last_draw_(start_),
      last_checkpoint_(start_) {
  if (resumed.has_value()) {
    if (resumed->has_input) resumed_input_ = resumed->input;
    done_ = std::move(resumed->done);
    succeeded_ = resumed->succeeded;
    failed_ = resumed->failed;
  }
}

absl::Status Job::Begin() {
  writer_.Begin();
  if (!checkpoint_path_.empty()) return SaveCheckpointNow(false);
  return absl::OkStatus();
}

bool Job::AtEnd() {
  if (stop_->load() != 0) return true;
  if (has_current_) return false;
  if (!lookahead_.empty()) {
    current_ = std::move(lookahead_.front());
    lookahead_.pop_front();
    has_current_ = true;
    return false;
  }
  has_current_ = LoadNext();
  return !has_current_ || stop_->load() != 0;
}

bool Job::LoadNext() {
  while (true) {
    if (stop_->load() != 0 || input_done_ || !fatal_.ok()) return false;
    const uint64_t number = records_read_;
    const bool skip = done_.Contains(number);
    absl::StatusOr<bool> more = reader_->Next(&current_, !skip);
    if (!more.ok()) {
      fatal_ = more.status();
      return false;
    }
    if (!*more) {
      input_done_ = true;
      return false;
    }
    ++records_read_;
    NoteEnd(number);
    if (resumed_input_.has_value() && resumed_input_->settled_records == number + 1) {
      // The records done before end here: the input up to here must be the
      // checkpoint's (this catches a changed stdin; files are checked up
      // front).
      if (reader_->lines().bytes_consumed() != resumed_input_->settled_bytes ||
          reader_->lines().hash() != resumed_input_->settled_hash) {
        fatal_ = absl::FailedPreconditionError(absl::StrCat(
            "the input is not the one the checkpoint was made against: its first ",
            number + 1, " records differ; run without --resume to start over"));
        refused_ = true;
        return false;
      }
    }
    if (skip) {
      ++skipped_;
      continue;
    }
    if (!current_.error.ok()) {
      Fail(current_, current_.error);
      continue;
    }
    if (validator_) {
      if (absl::Status s = validator_(current_); !s.ok()) {
        Fail(current_, s);
        continue;
      }
    }
    return true;
  }
}

void Job::NoteEnd(uint64_t number) {
  ends_.push_back(End{number, reader_->lines().bytes_consumed(), reader_->lines().hash()});
  // Keep the last record of the settled prefix and everything after it.
  while (ends_.size() > 1 && done_.prefix() > 0 && ends_[1].number <= done_.prefix() - 1) {
    ends_.pop_front();
  }
}

size_t Job::SuggestWindow(int workers) {
  constexpr size_t kSample = 256;
  constexpr size_t kMaxAuto = 16384;  // the pool's automatic window never exceeds it
  size_t bytes = 0;
  while (lookahead_.size() < kSample && bytes < kWindowBytes && LoadNext()) {
    // A record in flight is held about three times: its text, its
    // serialized arguments and its result.
    bytes += 3 * (current_.raw.size() + 64);
    lookahead_.push_back(std::move(current_));
    current_ = Record();
  }
  if (lookahead_.empty()) return 0;
  const size_t per_record = std::max<size_t>(1, bytes / lookahead_.size());
  const size_t window = kWindowBytes / per_record;
  if (window >= kMaxAuto) return 0;
  return std::max<size_t>(window, 2 * static_cast<size_t>(std::max(workers, 1)));
}

bool Job::TakeNext(Record* r) {
  if (AtEnd()) return false;
  *r = std::move(current_);
  current_ = Record();
  has_current_ = false;
  return true;
}

void Job::WriteOutput(std::string_view lines) {
  out_.Write(lines);
  if (fatal_.ok() && !out_.status().ok()) fatal_ = out_.status();
}

void Job::Succeeded(const Record& record, bool empty) {
  ++succeeded_;
  ++processed_now_;
  if (empty) ++empty_;
  done_.Add(record.number);
}

void Job::Submitted() {
  in_flight_.emplace(next_map_index_++, std::move(current_));
  current_ = Record();
  has_current_ = false;
}

void Job::Fail(const Record& record, const absl::Status& error) {
  if (errors_.is_stdio()) ClearProgress();
  errors_.Write(DeadLetter(record, error));
  if (errors_.is_stdio()) (void)errors_.Flush();
  ++failed_;
  ++processed_now_;
  done_.Add(record.number);
  if (fatal_.ok() && !errors_.status().ok()) fatal_ = errors_.status();
}

void Job::Complete(uint64_t map_index, absl::StatusOr<Json> result) {
  auto node = in_flight_.extract(map_index);
  if (node.empty()) {
    // A map error not tied to a record (none are expected with no map
    // timeout and no strict mode): stop rather than guess.
    if (fatal_.ok()) fatal_ = result.ok() ? absl::InternalError("unknown map item") : result.status();
    return;
  }
  Record& record = node.mapped();
  if (result.ok()) {
    writer_.Write(record, *result);
    Succeeded(record, result->is_string() && result->get_ref<const std::string&>().empty());
  } else {
    Fail(record, result.status());
  }
  if (fatal_.ok() && !out_.status().ok()) fatal_ = out_.status();
  if (fatal_.ok() && !errors_.status().ok()) fatal_ = errors_.status();
}

void Job::Tick(bool now_please) {
  if (++ticks_ % 64 != 0 && !now_please) return;
  const absl::Time now = absl::Now();
  if (draw_progress_ && now - last_draw_ >= absl::Milliseconds(100)) {
    last_draw_ = now;
    DrawProgress(false);
  }
  if (!checkpoint_path_.empty() && now - last_checkpoint_ >= absl::Seconds(1)) {
    last_checkpoint_ = now;
    if (absl::Status s = SaveCheckpointNow(false); !s.ok() && fatal_.ok()) fatal_ = s;
  }
}

absl::Status Job::SaveCheckpointNow(bool complete) {
  if (refused_) return absl::OkStatus();
  // The files first: the checkpoint may only name bytes that are on disk.
  if (absl::Status s = out_.Sync(); !s.ok()) return s;
  if (absl::Status s = errors_.Sync(); !s.ok()) return s;
  if (checkpoint_path_.empty()) return absl::OkStatus();
  Checkpoint c;
  c.run = run_id_;
  c.done = done_;
  c.output_bytes = out_.bytes();
  c.errors_bytes = errors_.is_stdio() ? 0 : errors_.bytes();
  c.succeeded = succeeded_;
  c.failed = failed_;
  c.complete = complete;
  c.has_input = true;
  c.input = input_id_;
  // The settled records end at the last of them.
  if (done_.size() > 0) {
    while (ends_.size() > 1 && ends_[1].number <= done_.prefix() - 1) ends_.pop_front();
    const uint64_t last = done_.beyond().empty() ? done_.prefix() - 1 : *done_.beyond().rbegin();
    if (!ends_.empty() && last >= ends_.front().number &&
        last - ends_.front().number < ends_.size()) {
      const End& e = ends_[last - ends_.front().number];
      c.input.settled_records = e.number + 1;
      c.input.settled_bytes = e.bytes;
      c.input.settled_hash = e.hash;
    } else if (resumed_input_.has_value()) {
      // Nothing read yet beyond what the checkpoint resumed from settled.
      c.input.settled_records = resumed_input_->settled_records;
      c.input.settled_bytes = resumed_input_->settled_bytes;
      c.input.settled_hash = resumed_input_->settled_hash;
    }
  }
  return SaveCheckpoint(checkpoint_path_, c);
}

void Job::Notice(const std::string& what) {
  ClearProgress();
  WriteStderr(absl::StrCat("poolrun: ", what, "\n"));
}

void Job::ClearProgress() {
  if (progress_drawn_) {
    WriteStderr("\r\x1b[K");
    progress_drawn_ = false;
  }
}

void Job::DrawProgress(bool final) {
  const absl::Duration elapsed = absl::Now() - start_;
  const double secs = absl::ToDoubleSeconds(elapsed);
  const double rate = secs > 0 ? static_cast<double>(processed_now_) / secs : 0;
  std::string line = "\r\x1b[K";
  const std::optional<uint64_t> size = reader_->lines().size();
  const uint64_t consumed = reader_->lines().bytes_consumed();
  if (size.has_value() && *size > 0) {
    // The reader runs a window ahead of the output: scale the fraction of
    // the file read by the fraction of the records read that are settled.
    const double read = static_cast<double>(consumed) / static_cast<double>(*size);
    const double settled =
        records_read_ == 0
            ? 0.0
            : static_cast<double>(skipped_ + processed_now_) / static_cast<double>(records_read_);
    const double frac = final && input_done_ ? 1.0 : std::min(1.0, read * settled);
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(frac * kWidth);
    absl::StrAppend(&line, "[", std::string(static_cast<size_t>(filled), '#'),
                    std::string(static_cast<size_t>(kWidth - filled), '.'), "] ",
                    absl::StrFormat("%3d%% ", static_cast<int>(frac * 100)));
    if (!final && frac > 0 && secs > 1) {
      const double eta = secs * (1 - frac) / frac;
      absl::StrAppend(&line, " ETA ", Clock(absl::Seconds(eta)), " ");
    }
  }
  absl::StrAppend(&line, " ", Thousands(succeeded_ + failed_), " records  ",
                  Thousands(static_cast<uint64_t>(rate)), "/s");
  if (failed_ > 0) absl::StrAppend(&line, "  ", Thousands(failed_), " failed");
  WriteStderr(line);
  progress_drawn_ = true;
}

int Job::Finish() {
  const int signal = stop_->load();
  const bool interrupted = signal != 0 && !input_done_;
  if (out_.broken_pipe()) {
    // The reader of stdout went away (e.g. `| head`): stop quietly.
    ClearProgress();
    return 128 + 13;  // as if killed by SIGPIPE
  }
  const bool complete = input_done_ && fatal_.ok() && in_flight_.empty();
  // A refused resume leaves the checkpoint as it was.
  absl::Status saved = refused_ ? absl::OkStatus() : SaveCheckpointNow(complete);
  if (fatal_.ok() && !saved.ok()) fatal_ = saved;

  if (draw_progress_) {
    DrawProgress(true);
    WriteStderr("\n");
    progress_drawn_ = false;
  }
  const absl::Duration elapsed = absl::Now() - start_;
  const double secs = std::max(1e-9, absl::ToDoubleSeconds(elapsed));
  std::string summary = absl::StrCat(
      "poolrun: ", Thousands(processed_now_), " records in ", absl::StrFormat("%.2f", secs),
      " s (", Thousands(static_cast<uint64_t>(static_cast<double>(processed_now_) / secs)),
      " records/s): ", Thousands(succeeded_), " written");
  if (!out_.is_stdio()) absl::StrAppend(&summary, " to ", out_.path());
  if (empty_ > 0) {
    absl::StrAppend(&summary, " (", Thousands(empty_), " of them empty)");
  }
  absl::StrAppend(&summary, ", ", Thousands(failed_), " failed");
  if (failed_ > 0) absl::StrAppend(&summary, " (dead letters: ", errors_.path(), ")");
  struct rusage self {};
  struct rusage children {};
  if (::getrusage(RUSAGE_SELF, &self) == 0 && ::getrusage(RUSAGE_CHILDREN, &children) == 0) {
    auto cpu_us = [](const struct rusage& r) {
      return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 +
             static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
    };
    if (processed_now_ > 0) {
      const double n = static_cast<double>(processed_now_);
      absl::StrAppend(&summary, "; CPU per record: poolrun ",
                      absl::StrFormat("%.1f", cpu_us(self) / n), " us, workers ",
                      absl::StrFormat("%.1f", cpu_us(children) / n), " us");
    }
    absl::StrAppend(&summary, "; peak memory ", self.ru_maxrss / 1024, " MiB");
  }
  if (skipped_ > 0) {
    absl::StrAppend(&summary, "; resumed after ", Thousands(skipped_), " records done before");
  }
  absl::StrAppend(&summary, "\n");
  WriteStderr(summary);

  if (!fatal_.ok()) {
    WriteStderr(absl::StrCat("poolrun: stopped: ", fatal_.ToString(), "\n"));
    return refused_ ? kExitUsage : kExitIo;
  }
  if (interrupted) {
    WriteStderr(absl::StrCat("poolrun: interrupted; the records in flight were finished and "
                             "written. ",
                             checkpoint_path_.empty()
                                 ? std::string("(--resume needs --output FILE.)")
                                 : "Run the same command with --resume to continue.",
                             "\n"));
    return 128 + signal;
  }
  return failed_ > 0 ? kExitSomeFailed : kExitOk;
}

}  // namespace procpool::cli
