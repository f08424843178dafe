#include "cli/batched.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cli/codec.h"

namespace procpool::cli {
namespace {

// A batch aims at about this much work in a worker (measured), so that
// per-batch costs vanish and checkpoints and progress stay fresh.
constexpr double kBatchTargetNs = 20e6;
constexpr size_t kMaxBatchRecords = 4096;
constexpr size_t kFirstBatchRecords = 16;
// And at most this many bytes of records (a larger record is alone).
constexpr size_t kMaxBatchBytes = size_t{1} << 20;

struct Batch {
  uint64_t seq = 0;
  std::vector<Record> records;
};

class Runner {
 public:
  Runner(ProcessPool& pool, Job& job, const PoolrunOptions& o, BatchJob config,
         std::optional<ProgressSlots> progress)
      : pool_(pool), job_(job), o_(o), config_(std::move(config)), progress_(std::move(progress)) {
    AppendJsonString(&key_colon_, config_.as);
    key_colon_.push_back(':');
    comma_key_colon_ = "," + key_colon_;
  }

  // ---- The map's input: one BatchRequest per batch ----
  bool AtEnd() {
    if (has_current_) return false;
    current_ = Batch();
    current_.seq = next_seq_++;
    const size_t want = BatchRecords();
    size_t bytes = 0;
    while (current_.records.size() < want && bytes < kMaxBatchBytes) {
      Record r;
      if (held_.has_value()) {
        r = std::move(*held_);
        held_.reset();
      } else if (!job_.TakeNext(&r)) {
        break;
      }
      // A huge record goes alone, so that a worker may read it from the
      // input (MakeRequest).
      if (r.raw.size() >= kHugeRecordBytes && !current_.records.empty()) {
        held_ = std::move(r);
        break;
      }
      bytes += r.raw.size();
      current_.records.push_back(std::move(r));
    }
    has_current_ = !current_.records.empty();
    return !has_current_;
  }
  BatchRequest Request() const { return MakeRequest(current_, /*from_file_ok=*/true); }
  void Submitted() {
    in_flight_.emplace(next_map_index_++, std::move(current_));
    has_current_ = false;
  }

  // ---- Results ----
  void Complete(uint64_t map_index, const absl::StatusOr<BatchReply>& reply) {
    auto node = in_flight_.extract(map_index);
    if (node.empty()) return;
    Batch& batch = node.mapped();
    if (reply.ok() && !reply->unread.empty()) {
      // The worker could not read the batch from the input: send it.
      Unread(batch.records[0], batch.records.size(), reply->unread);
      absl::StatusOr<BatchReply> again =
          pool_.Submit(*task_, MakeRequest(batch, /*from_file_ok=*/false)).Result();
      if (again.ok()) {
        Settle(batch, *again);
      } else {
        RunAlone(batch, again.status(), /*from_file_ok=*/false);
      }
    } else if (reply.ok()) {
      Settle(batch, *reply);
    } else {
      RunAlone(batch, reply.status(), /*from_file_ok=*/true);
    }
    job_.Tick(/*now=*/true);
  }

 private:
  size_t BatchRecords() const {
    if (o_.chunksize > 0) return std::min<size_t>(o_.chunksize, kMaxBatchRecords);
    if (ns_per_record_ <= 0) return kFirstBatchRecords;
    return std::clamp<size_t>(static_cast<size_t>(kBatchTargetNs / ns_per_record_), 1,
                              kMaxBatchRecords);
  }

  // The request reads the batch's records in place: the batch lives until
  // its reply is in, and the pool serializes a request before that. Records
  // of a named regular file are not sent at all (`from_file_ok`): the
  // worker reads them from the file, which it opened at its start.
  BatchRequest MakeRequest(const Batch& b, bool from_file_ok) const {
    return MakeRequest(b.seq, b.records.data(), b.records.size(), from_file_ok);
  }
  BatchRequest MakeRequest(uint64_t seq, const Record* records, size_t n,
                           bool from_file_ok) const {
    BatchRequest req;
    req.job = config_;
    req.seq = seq;
    // The workers have the input open only when it was named (stdin may be
    // a regular file too, which they do not have).
    bool from_file = from_file_ok && o_.input != "-";
    for (size_t i = 0; from_file && i < n; ++i) from_file = records[i].file_offset >= 0;
    if (from_file) {
      const uint64_t first = static_cast<uint64_t>(records[0].file_offset);
      StreamHash hash;
      for (size_t i = 0; i < n; ++i) {
        const uint64_t start = static_cast<uint64_t>(records[i].file_offset) - first;
        req.from_file.starts.push_back(start);
        req.from_file.lengths.push_back(records[i].raw.size());
        req.from_file.length = std::max(req.from_file.length, start + records[i].raw.size());
        hash.Update(records[i].raw);
      }
      req.from_file.offset = first;
      req.from_file.hash = hash.Value();
      if (req.from_file.length > 0) return req;
      req.from_file = FileSpan();  // only empty records: send them
    }
    req.borrowed = records;
    req.borrowed_count = n;
    return req;
  }

  void Settle(const Batch& batch, const BatchReply& reply) {
    Settle(batch.records.data(), batch.records.size(), reply);
  }
  void Settle(const Record* records, size_t n, const BatchReply& reply) {
    size_t f = 0;
    size_t piece = 0;
    size_t at = 0;
    const std::string_view output = reply.output;
    for (size_t i = 0; i < n; ++i) {
      if (f < reply.failures.size() && reply.failures[f].index == i) {
        const RecordFailure& failure = reply.failures[f++];
        job_.Fail(records[i],
                  absl::Status(static_cast<absl::StatusCode>(failure.code), failure.message));
        continue;
      }
      if (piece >= reply.lengths.size() || at + reply.lengths[piece] > output.size()) {
        job_.Fail(records[i], absl::DataLossError("the worker's reply is short"));
        continue;
      }
      const std::string_view bytes = output.substr(at, reply.lengths[piece]);
      if (piece < reply.splice.size() && reply.splice[piece] != 0) {
        const SplicePoint point = SpliceAt(records[i].raw);
        job_.WriteOutput(point.head);
        job_.WriteOutput(point.comma ? comma_key_colon_ : key_colon_);
        job_.WriteOutput(bytes);
        job_.WriteOutput("}\n");
      } else {
        job_.WriteOutput(bytes);
      }
      at += reply.lengths[piece++];
      job_.Succeeded(records[i], false);
    }
    job_.CountEmpty(reply.empty_results);
    if (n > 0 && reply.busy_ns > 0) {
      const double per = static_cast<double>(reply.busy_ns) / n;
      ns_per_record_ = ns_per_record_ <= 0 ? per : 0.7 * ns_per_record_ + 0.3 * per;
    }
  }

  // A worker could not read the `n` records from `first` on from the input
  // (`why`): poolrun sends them, and says so.
  // Said once a run: the next such batches are sent without a word.
  void Unread(const Record& first, size_t n, const std::string& why) {
    if (unread_noticed_) return;
    unread_noticed_ = true;
    job_.Notice(absl::StrCat(n == 1 ? "record " : "records from ", first.number + 1, " (line ",
                             first.line, "): a worker could not read ",
                             n == 1 ? "it" : "them", " from the input (", why,
                             "); poolrun sends ", n == 1 ? "it" : "them",
                             " instead, and any others it cannot read"));
  }

  // The pool's message about a one-record batch, in terms of the user's task.
  std::string Reword(const absl::Status& s) const {
    std::string m(s.message());
    const std::string prefix = absl::StrCat("task '", kBatchTaskName, "'");
    if (absl::StartsWith(m, prefix)) {
      m = absl::StrCat("task '", config_.task, "'", m.substr(prefix.size()));
      // The batch's index in the map is not the record's: drop it.
      if (absl::StartsWith(m.substr(config_.task.size() + 7), " (input #")) {
        const size_t open = config_.task.size() + 7;
        const size_t close = m.find(')', open);
        if (close != std::string::npos) m.erase(open, close + 1 - open);
      }
    }
    return m;
  }

  // A batch that failed as a whole (its worker died, or the adapter threw):
  // its records run again one at a time. The record its worker was running
  // when it died is blamed: it ran past --timeout, or it is a crash, which
  // counts as one try of --retries.
  void RunAlone(Batch& batch, const absl::Status& error, bool from_file_ok) {
    std::optional<ProgressSlots::Running> running;
    if (error.code() == absl::StatusCode::kAborted && progress_.has_value()) {
      running = progress_->Get(batch.seq);
    }
    const absl::Duration timeout = o_.timeout;
    struct Pending {
      size_t index;
      std::optional<Future<BatchReply>> future;
      absl::Status verdict;  // when not run again
      uint64_t seq = 0;
      SubmitOptions options;
    };
    std::vector<Pending> pending;
    for (size_t i = 0; i < batch.records.size(); ++i) {
      Pending p{i, std::nullopt, absl::OkStatus()};
      int retries = o_.retries;
      if (running.has_value() && running->index == i) {
        const int64_t ran_ns = ProgressSlots::NowNs() - running->start_ns;
        if (timeout != absl::InfiniteDuration() &&
            absl::Nanoseconds(ran_ns) >= timeout) {
          p.verdict = absl::ResourceExhaustedError(absl::StrCat(
              "task '", config_.task, "' ran longer than --timeout (",
              absl::FormatDuration(timeout), ") on this record; its worker was stopped"));
        } else if (retries == 0) {
          p.verdict = absl::AbortedError(absl::StrCat("the worker died while running task '",
                                                      config_.task, "' on this record: ",
                                                      Reword(error)));
        } else {
          --retries;
        }
      }
      if (p.verdict.ok()) {
        SubmitOptions so;
        so.retries = retries;
        so.timeout = timeout;
        p.seq = next_seq_++;
        p.future = pool_.Submit(so, *task_, MakeRequest(p.seq, &batch.records[i], 1, from_file_ok));
        p.options = so;
      }
      pending.push_back(std::move(p));
    }
    for (Pending& p : pending) {
      const Record& record = batch.records[p.index];
      if (!p.future.has_value()) {
        job_.Fail(record, p.verdict);
        continue;
      }
      absl::StatusOr<BatchReply> reply = p.future->Result();
      if (reply.ok() && !reply->unread.empty()) {
        Unread(record, 1, reply->unread);
        p.seq = next_seq_++;
        reply = pool_.Submit(p.options, *task_,
                             MakeRequest(p.seq, &record, 1, /*from_file_ok=*/false))
                    .Result();
      }
      if (reply.ok()) {
        Settle(&record, 1, *reply);
        continue;
      }
      absl::Status s = reply.status();
      std::optional<ProgressSlots::Running> r =
          progress_.has_value() ? progress_->Get(p.seq) : std::nullopt;
      if (s.code() == absl::StatusCode::kAborted && r.has_value() &&
          timeout != absl::InfiniteDuration() &&
          absl::Nanoseconds(ProgressSlots::NowNs() - r->start_ns) >= timeout) {
        s = absl::ResourceExhaustedError(absl::StrCat(
            "task '", config_.task, "' ran longer than --timeout (", absl::FormatDuration(timeout),
            ") on this record; its worker was stopped"));
      } else {
        s = absl::Status(s.code(), Reword(s));
      }
      job_.Fail(record, s);
    }
  }

 public:
  void set_task(const TaskHandle<BatchReply(BatchRequest)>* task) { task_ = task; }

 private:
  ProcessPool& pool_;
  Job& job_;
  const PoolrunOptions& o_;
  const BatchJob config_;
  std::optional<ProgressSlots> progress_;
  const TaskHandle<BatchReply(BatchRequest)>* task_ = nullptr;

  Batch current_;
  bool has_current_ = false;
  std::optional<Record> held_;  // the next batch's first record, taken already
  bool unread_noticed_ = false;  // see Unread
  uint64_t next_seq_ = 0;
  uint64_t next_map_index_ = 0;
  absl::flat_hash_map<uint64_t, Batch> in_flight_;
  double ns_per_record_ = 0;
  std::string key_colon_;        // "<as>":
  std::string comma_key_colon_;  // ,"<as>":
};

// The batches as an input range for the pool's map.
class BatchRange {
 public:
  explicit BatchRange(Runner* runner) : runner_(runner) {}
  class iterator {
   public:
    using value_type = BatchRequest;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(Runner* r) : runner_(r) {}
    BatchRequest operator*() const { return runner_->Request(); }
    iterator& operator++() {
      runner_->Submitted();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) {
      return it.runner_->AtEnd();
    }

   private:
    Runner* runner_ = nullptr;
  };
  iterator begin() { return iterator(runner_); }
  std::default_sentinel_t end() const { return {}; }

 private:
  Runner* runner_;
};

}  // namespace

int RunBatched(ProcessPool& pool, Job& job, const PoolrunOptions& o, BatchJob config,
               std::optional<ProgressSlots> progress) {
  absl::StatusOr<TaskHandle<BatchReply(BatchRequest)>> task =
      pool.Task<BatchReply(BatchRequest)>(kBatchTaskName);
  if (!task.ok()) {
    std::fprintf(stderr, "poolrun: %s\n", task.status().ToString().c_str());
    return kExitUsage;
  }
  if (progress.has_value()) config.progress_path = progress->path();
  if (o.timeout != absl::InfiniteDuration()) {
    config.timeout_ns = absl::ToInt64Nanoseconds(o.timeout);
  }
  if (absl::Status s = job.Begin(); !s.ok()) {
    std::fprintf(stderr, "poolrun: %s\n", s.ToString().c_str());
    return kExitIo;
  }
  Runner runner(pool, job, o, std::move(config), std::move(progress));
  runner.set_task(&*task);
  MapOptions mo;
  // Batches in flight: enough to keep every worker busy while poolrun
  // writes the results of others.
  mo.window = o.window > 0 ? o.window : static_cast<size_t>(3 * std::max(pool.num_workers(), 1));
  mo.chunksize = 1;
  BatchRange range(&runner);
  if (o.unordered) {
    auto results = pool.MapUnordered(mo, *task, range);
    for (const auto& item : results) runner.Complete(item.index, item.result);
  } else {
    auto results = pool.TryMap(mo, *task, range);
    uint64_t i = 0;
    for (const absl::StatusOr<BatchReply>& r : results) runner.Complete(i++, r);
  }
  pool.Shutdown(/*wait=*/true);
  return job.Finish();
}

}  // namespace procpool::cli
