// The call loop of procpool_worker (worker_loop.h).

#include "pool/internal/worker_loop.h"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "pool/internal/claim_table.h"
#include "pool/internal/payload_region.h"
#include "pool/internal/plugin_loader.h"
#include "pool/internal/shared_memory.h"
#include "pool/internal/unique_fd.h"
#include "pool/internal/wire.h"
#include "pool/internal/worker_command.h"
#include "pool/internal/worker_limits.h"
#include "tasks/abi.h"

namespace procpool::internal {
namespace {

uint64_t NowNs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

// Current resident set size, from /proc/self/statm.
uint64_t CurrentRss(int statm_fd) {
  char buf[128];
  ssize_t n = ::pread(statm_fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return 0;
  buf[n] = '\0';
  unsigned long long size = 0, resident = 0;
  if (std::sscanf(buf, "%llu %llu", &size, &resident) != 2) return 0;
  return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

uint64_t PeakRss() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;
}

// Single calls whose arguments came through the call region with at most
// this many bytes build their answer in memory and then write it over the
// arguments (Worker::MoveLargeAnswer); larger ones stream their answer
// into the result region as it is produced. Page reuse saves more than the
// extra copy costs up to a few MiB (4 MiB echo: 816 vs 1283 us), not at
// 16 MiB (4.8 vs 4.4 ms), where the caches hold neither way. (A chunk of
// one item streams its answer over its arguments instead: RunChunk.)
constexpr size_t kAnswerOverArgumentsMax = size_t{8} << 20;

class Worker {
 public:
  // `statm` is /proc/self/statm, opened before the sandbox (invalid
  // without --max-rss).
  Worker(UniqueFd sock, SharedMemory status, PluginSet plugins,
         const WorkerCommand& args, UniqueFd statm)
      : sock_(std::move(sock)),
        status_mem_(std::move(status)),
        page_(static_cast<WorkerStatusPage*>(status_mem_.data())),
        claims_(ClaimWords(status_mem_), nullptr),
        plugins_(std::move(plugins)),
        max_frame_(args.max_frame),
        max_tasks_(args.max_tasks),
        max_rss_(args.max_rss),
        statm_(std::move(statm)),
        decoder_(args.max_frame),
        frame_budget_(std::min<size_t>(1u << 20, args.max_frame / 2)),
        call_region_(UniqueFd(args.call_region_fd)),
        result_region_(UniqueFd(args.result_region_fd)),
        shm_min_(args.shm_min) {}

  int Serve() {
    while (true) {
      absl::StatusOr<std::optional<Frame>> frame = ReadFrame(sock_.get(), decoder_);
      if (!frame.ok()) {
        std::fprintf(stderr, "procpool_worker: %s\n",
                     frame.status().ToString().c_str());
        return 2;
      }
      if (!frame->has_value()) return 0;  // the pool closed the connection
      uint64_t t0 = NowNs();
      if ((*frame)->type != FrameType::kCalls) {
        std::fprintf(stderr, "procpool_worker: unexpected frame type %d\n",
                     static_cast<int>((*frame)->type));
        return 2;
      }
      // Arguments stay in the decoder's buffer until the batch is done.
      absl::StatusOr<std::vector<CallView>> calls =
          DecodeCallViews((*frame)->payload);
      if (!calls.ok()) {
        std::fprintf(stderr, "procpool_worker: %s\n",
                     calls.status().ToString().c_str());
        return 2;
      }
      page_->codec_ns.fetch_add(NowNs() - t0, std::memory_order_relaxed);
      if (!RunBatch(*calls)) return 2;
      // At most once a millisecond, and before retiring: getrusage is a
      // system call (about a microsecond here) and serial callers send a
      // batch per call. A batch that grew the peak much ran for a while, so
      // it is rarely skipped.
      if (const uint64_t now = NowNs();
          now - last_rss_sample_ns_ >= 1'000'000 || retire_ != RetireReason::kNone) {
        page_->peak_rss_bytes.store(PeakRss(), std::memory_order_relaxed);
        last_rss_sample_ns_ = now;
      }
      if (retire_ != RetireReason::kNone) {
        page_->retire_reason.store(static_cast<uint32_t>(retire_),
                                   std::memory_order_release);
        return 0;
      }
    }
  }

 private:
  // Runs calls in order. Results go out at the end of the batch, or sooner
  // when a batch has been running for a while, so a caller waiting on an
  // early task of a long batch is not held up. Each result is written by
  // the task straight into the outgoing kResults frame (the bytes of
  // AppendFrame(kResults, std::vector<ResultMsg>)), with no copy.
  bool RunBatch(const std::vector<CallView>& calls) {
    uint64_t last_flush = NowNs();
    for (const CallView& call : calls) {
      if (retire_ != RetireReason::kNone) break;  // the pool re-queues the rest
      if (!frame_) frame_.emplace(&out_);
      const size_t record = frame_->BeginResult(call.id);
      if (!claims_.TryStart(++calls_received_)) {
        // Cancelled, or taken back for another worker, before it started.
        frame_->EndResult(record, static_cast<uint8_t>(ResultCode::kSkipped), 0);
        continue;
      }
      uint64_t t0 = NowNs();
      page_->running_since_ns.store(t0, std::memory_order_relaxed);
      page_->running_task.store(call.id, std::memory_order_release);
      const bool chunk = (call.task & kChunkBit) != 0;
      const uint32_t task = call.task & ~(kChunkBit | kRegionBit);
      std::string_view args = call.args;
      std::shared_ptr<RegionMapping> args_map;  // keeps `args` mapped
      if (call.task & kRegionBit) {
        absl::StatusOr<RegionRef> ref = ParseRegionRef(call.args);
        absl::StatusOr<std::shared_ptr<RegionMapping>> map =
            !ref.ok()                ? ref.status()
            : !call_region_.valid() ? absl::DataLossError("a region call, but no call region")
                                    : call_region_.Covering(ref->offset, ref->length);
        if (!map.ok()) {
          std::fprintf(stderr, "procpool_worker: call %llu: %s\n",
                       static_cast<unsigned long long>(call.id),
                       map.status().ToString().c_str());
          return false;
        }
        args_map = *std::move(map);
        args = std::string_view(args_map->data() + ref->offset, ref->length);
      }
      uint8_t code;
      if (task >= plugins_.num_tasks()) {
        code = static_cast<uint8_t>(ResultCode::kUnknownTask);
        out_ += absl::StrCat("worker has no task #", task);
      } else if (chunk) {
        code = static_cast<uint8_t>(ResultCode::kOk);
        uint8_t in_region = 0;
        if (!RunChunk(task, args, args_map != nullptr, &out_, &in_region)) return false;
        code |= in_region != 0
                    ? in_region
                    : MoveLargeAnswer(ResultsFrameBuilder::kRecordHeaderSize + record,
                                      args_map != nullptr);
      } else {
        // Answers to arguments that came through the call region are built
        // here and then go over them (MoveLargeAnswer) up to
        // kAnswerOverArgumentsMax; larger ones, and answers to arguments
        // that came in the frame, go on in the result region once large.
        const bool build_here = args_map != nullptr && args.size() <= kAnswerOverArgumentsMax;
        const size_t start = out_.size();
        uint8_t in_region = 0;
        code = static_cast<uint8_t>(RunOne(task, args, &out_,
                                           build_here ? Sink::kFrame : Sink::kResultRegion,
                                           start, &in_region));
        if (in_region != 0) {
          AppendRegionRef(&out_, RegionRef{0, region_answer_len_});
          code |= in_region;
        } else {
          code |= MoveLargeAnswer(ResultsFrameBuilder::kRecordHeaderSize + record,
                                  /*call_region_free=*/args_map != nullptr);
        }
      }
      uint64_t t1 = NowNs();
      frame_->EndResult(record, code, t1 - t0);
      page_->running_task.store(0, std::memory_order_release);
      page_->busy_ns.fetch_add(t1 - t0, std::memory_order_relaxed);
      if (!chunk) TaskDone();
      // Keep every frame under the limit: if this result does not fit
      // after the ones before it, send those first.
      if (frame_->count() > 1 && out_.size() + 64 > max_frame_) {
        std::string last = frame_->TakeLastResult(record);
        if (!Flush()) return false;
        frame_.emplace(&out_);
        frame_->AddResultBytes(last);
      }
      if (t1 - last_flush > 1'000'000 || out_.size() > frame_budget_) {
        if (!Flush()) return false;
        last_flush = t1;
      }
    }
    return Flush();
  }

  // Where a large answer goes while the task writes it (see ResultSink).
  enum class Sink {
    kFrame,         // stays in `out`
    kOverArgs,      // the call region, over the call's arguments
    kResultRegion,  // the result region, when it is free
  };

  // Runs one call of `task` (or one item of a chunk); returns its
  // ResultCode, the answer appended to `out`. With a `sink` other than
  // kFrame, once the answer reaches shm_min_ bytes, out[move_from..] (the
  // answer so far, after any chunk header written before it) moves to
  // that region's start and the rest of the answer is written there
  // directly: *in_region is then kRegionResultInCall or kRegionResult,
  // `out` ends at move_from, and region_answer_len_ is how many bytes the
  // region holds from its start. Otherwise *in_region is 0.
  int RunOne(uint32_t task, std::string_view args, std::string* out, Sink sink_to,
             size_t move_from, uint8_t* in_region) {
    *in_region = 0;
    const procpool_task_v1& t = plugins_.task(task);
    const size_t start = out->size();
    // Map items and small answers take the plain sink: one call per append.
    std::optional<ResultSink> sink;
    if (sink_to == Sink::kOverArgs && shm_min_ > 0 && call_region_.mapping() != nullptr) {
      sink.emplace(ResultSink{this, out, start, move_from, Sink::kOverArgs});
    } else if (sink_to == Sink::kResultRegion && CanUseResultRegion()) {
      sink.emplace(ResultSink{this, out, start, move_from, Sink::kResultRegion});
    }
    if (limited_) BeforeLimitedTask();  // hard limits (worker_limits.h)
    int code = sink ? t.invoke(t.ctx, args.data(), args.size(), &*sink, &ResultSink::Append)
                    : t.invoke(t.ctx, args.data(), args.size(), out,
                               &internal::AppendToString);
    if (limited_) AfterLimitedTask(code != static_cast<int>(ResultCode::kOk));
    const size_t size = sink ? sink->size() : out->size() - start;
    if (size + 64 > max_frame_) {
      if (sink) sink->Abandon();
      out->resize(start);
      AppendTooLarge(task, size, out);
      return static_cast<int>(ResultCode::kException);
    }
    if (sink && sink->at != Sink::kFrame) {
      *in_region = sink->at == Sink::kOverArgs ? kRegionResultInCall : kRegionResult;
      region_answer_len_ = sink->region_len;
    }
    return code;
  }

  // Where a task's answer goes (see RunOne): appended to `out`, moved to a
  // region once it is large.
  struct ResultSink {
    Worker* self;
    std::string* out;
    size_t start;      // where the answer starts in `out`
    size_t move_from;  // what moves with it (<= start)
    Sink want;
    Sink at = Sink::kFrame;
    size_t region_len = 0;  // bytes in the region, from out[move_from]

    size_t size() const {
      return at != Sink::kFrame ? region_len - (start - move_from) : out->size() - start;
    }
    char* region() const {
      return at == Sink::kOverArgs ? self->call_region_.data() : self->result_region_.data();
    }

    static void Append(void* p, const char* data, size_t len) {
      auto* s = static_cast<ResultSink*>(p);
      if (s->at == Sink::kFrame && s->want != Sink::kFrame &&
          s->out->size() - s->start + len >= s->self->shm_min_) {
        // Large from here on: move what there is to the region and write
        // these bytes there directly rather than copy them twice.
        const Sink want = s->want;
        s->want = Sink::kFrame;
        const std::optional<size_t> moved = want == Sink::kOverArgs
                                                ? s->self->MoveOverArgs(s->out, s->move_from, len)
                                                : s->self->MoveToRegion(s->out, s->move_from);
        if (moved) {
          s->at = want;
          s->region_len = *moved;
        }
      }
      if (s->at == Sink::kOverArgs) {
        // Only what the pool mapped: the worker never grows the call region.
        if (s->region_len + len <= s->self->call_region_.mapping()->size()) {
          std::memcpy(s->region() + s->region_len, data, len);
          s->region_len += len;
          return;
        }
        s->BackToFrame();
      } else if (s->at == Sink::kResultRegion) {
        if (s->self->result_region_.Reserve(s->region_len + len).ok()) {
          std::memcpy(s->region() + s->region_len, data, len);
          s->region_len += len;
          return;
        }
        s->BackToFrame();  // no memory for the region
      }
      s->out->append(data, len);
    }
    // Carries on in the frame: the bytes written to the region come back.
    void BackToFrame() {
      out->append(region(), region_len);
      if (at == Sink::kResultRegion) self->ReleaseResultRegion();
      at = Sink::kFrame;
    }
    // Drops the answer written so far (what came before it stays).
    void Abandon() {
      if (at != Sink::kFrame) {
        out->append(region(), start - move_from);
        if (at == Sink::kResultRegion) self->ReleaseResultRegion();
        at = Sink::kFrame;
      }
      out->resize(start);
    }
  };

  bool CanUseResultRegion() const {
    return shm_min_ > 0 && result_region_.valid() &&
           page_->result_region_busy.load(std::memory_order_acquire) == 0;
  }
  // Claims the result region; false if the pool still holds a result there.
  bool TakeResultRegion() {
    if (!CanUseResultRegion()) return false;
    page_->result_region_busy.store(1, std::memory_order_relaxed);
    return true;
  }
  void ReleaseResultRegion() {
    page_->result_region_busy.store(0, std::memory_order_release);
  }

  // Claims the result region and moves out[start..] to its start; returns
  // how many bytes moved. Nothing changes when the region is taken or
  // cannot grow.
  std::optional<size_t> MoveToRegion(std::string* out, size_t start) {
    const size_t size = out->size() - start;
    if (!TakeResultRegion()) return std::nullopt;
    if (!result_region_.Reserve(size).ok()) {
      ReleaseResultRegion();
      return std::nullopt;
    }
    std::memcpy(result_region_.data(), out->data() + start, size);
    out->resize(start);
    return size;
  }

  // Moves out[start..] over the arguments at the call region's start, if
  // they and `more` bytes fit in what the pool mapped (the worker never
  // grows the call region); returns how many bytes moved.
  std::optional<size_t> MoveOverArgs(std::string* out, size_t start, size_t more) {
    const size_t size = out->size() - start;
    const std::shared_ptr<RegionMapping>& map = call_region_.mapping();
    if (map == nullptr || size + more > map->size()) return std::nullopt;
    std::memcpy(map->data(), out->data() + start, size);
    out->resize(start);
    return size;
  }

  // Moves a finished answer that starts at out_[start] to shared memory
  // when it is large, leaving its RegionRef in its place: to the call
  // region when `call_region_free` (the call's arguments came through it
  // and have been read) and the answer fits in what the pool has mapped
  // there, else to the result region when that is free. Returns the flag
  // for the result code: kRegionResultInCall, kRegionResult or 0 (left in
  // the frame).
  //
  // The call region comes first because an answer written over the pages
  // its arguments came in keeps the pages the two processes share to one
  // set: when the host's caches are contended, writing 1 MiB to pages the
  // other process last read was measured 2.8x slower than writing it to
  // pages this process just read (docs/PERFORMANCE.md, section 3).
  uint8_t MoveLargeAnswer(size_t start, bool call_region_free) {
    const size_t size = out_.size() - start;
    if (shm_min_ == 0 || size < shm_min_) return 0;
    if (call_region_free) {
      if (const std::optional<size_t> moved = MoveOverArgs(&out_, start, 0)) {
        AppendRegionRef(&out_, RegionRef{0, *moved});
        return kRegionResultInCall;
      }
    }
    const std::optional<size_t> moved = MoveToRegion(&out_, start);
    if (!moved) return 0;
    AppendRegionRef(&out_, RegionRef{0, *moved});
    return kRegionResult;
  }

  void AppendTooLarge(uint32_t task, size_t size, std::string* out) const {
    internal::AppendArchive(
        out, std::string("procpool::ResultTooLarge"),
        absl::StrCat("the result of task '", plugins_.task(task).name, "' is ",
                     size, " bytes, over the frame limit of ", max_frame_,
                     " bytes"));
  }

  // Runs the items of a chunk (see kChunkBit in wire.h) in order, writing
  // the chunk result to `out`. Stops early, answering only the items run,
  // when the answers fill a frame or the worker is to retire; the pool
  // sends the rest again. The answer of a chunk of one item goes on in
  // shared memory once large: over its arguments when they came through
  // the call region (`args_in_region`), else in the result region. The
  // whole chunk result is then there and `out` holds its RegionRef, with
  // *in_region the flag for the result code (else 0). False if the chunk
  // is malformed.
  bool RunChunk(uint32_t task, std::string_view args, bool args_in_region, std::string* out,
                uint8_t* in_region) {
    *in_region = 0;
    absl::StatusOr<std::vector<std::string_view>> items = SplitChunkItems(args);
    if (!items.ok()) {
      std::fprintf(stderr, "procpool_worker: %s\n", items.status().ToString().c_str());
      return false;
    }
    const size_t start = BeginChunkResult(out);
    if (items->size() == 1) {
      page_->running_item.store(0, std::memory_order_release);
      const size_t answer = BeginChunkAnswer(out);
      const auto code = static_cast<uint8_t>(
          RunOne(task, (*items)[0], out, args_in_region ? Sink::kOverArgs : Sink::kResultRegion,
                 start, in_region));
      TaskDone();
      if (*in_region == 0) {
        EndChunkAnswer(out, answer, code);
        EndChunkResult(out, start, 1);
        return true;
      }
      // The chunk result's header went to the region with the answer.
      EndOneAnswerChunkResult(
          *in_region == kRegionResultInCall ? call_region_.data() : result_region_.data(),
          region_answer_len_, answer - start, code);
      AppendRegionRef(out, RegionRef{0, region_answer_len_});
      return true;
    }
    uint32_t answered = 0;
    for (size_t k = 0; k < items->size(); ++k) {
      if (k > 0 && (retire_ != RetireReason::kNone || out->size() - start > frame_budget_)) {
        break;
      }
      // Each item's time limit runs from its own start, which the pool
      // takes from when it first sees the item running.
      page_->running_item.store(static_cast<uint32_t>(k), std::memory_order_release);
      const size_t answer = BeginChunkAnswer(out);
      uint8_t unused = 0;
      const int code = RunOne(task, (*items)[k], out, Sink::kFrame, answer, &unused);
      if (out->size() - start + 64 > max_frame_) {
        // Fits alone but not after the others: answer it next time.
        out->resize(answer);
        break;
      }
      EndChunkAnswer(out, answer, static_cast<uint8_t>(code));
      ++answered;
      TaskDone();
    }
    EndChunkResult(out, start, answered);
    return true;
  }

  // Counts a finished task (a call or a chunk item) and decides whether
  // the worker should retire.
  void TaskDone() {
    uint64_t done = page_->tasks_done.fetch_add(1, std::memory_order_relaxed) + 1;
    if (max_tasks_ > 0 && done >= max_tasks_) retire_ = RetireReason::kMaxTasks;
    if (max_rss_ > 0 && statm_.valid()) {
      uint64_t rss = CurrentRss(statm_.get());
      page_->rss_bytes.store(rss, std::memory_order_relaxed);
      if (rss > max_rss_) retire_ = RetireReason::kMaxMemory;
    }
  }

  // Sends the results frame being built, if any.
  bool Flush() {
    if (!frame_) return true;
    frame_->Finish();
    frame_.reset();
    absl::Status s = WriteAll(sock_.get(), out_);
    out_.clear();
    if (out_.capacity() > (64u << 20)) std::string().swap(out_);
    // On failure the pool is gone; nobody is left to tell.
    return s.ok();
  }

  static std::atomic<uint64_t>* ClaimWords(SharedMemory& status) {
    return reinterpret_cast<std::atomic<uint64_t>*>(static_cast<char*>(status.data()) +
                                                    kWorkerStatusPageSize);
  }

  UniqueFd sock_;
  uint64_t last_rss_sample_ns_ = 0;  // see Serve()
  SharedMemory status_mem_;
  WorkerStatusPage* page_;
  ClaimTable claims_;            // after the status page
  uint64_t calls_received_ = 0;  // the pool numbers its calls the same way
  PluginSet plugins_;
  size_t max_frame_;
  uint64_t max_tasks_;
  uint64_t max_rss_;
  UniqueFd statm_;
  RetireReason retire_ = RetireReason::kNone;
  FrameDecoder decoder_;
  const size_t frame_budget_;  // send results once a frame holds this much
  std::string out_;
  std::optional<ResultsFrameBuilder> frame_;  // building in out_, if any
  // Large payloads (payload_region.h); invalid when the pool uses none.
  PayloadRegion call_region_;
  PayloadRegion result_region_;
  const size_t shm_min_;
  size_t region_answer_len_ = 0;  // see RunOne
  const bool limited_ = WorkerLimitsActive();
};

}  // namespace

int ServeCalls(UniqueFd sock, SharedMemory status, PluginSet plugins, const WorkerCommand& args,
               UniqueFd statm) {
  Worker worker(std::move(sock), std::move(status), std::move(plugins), args, std::move(statm));
  return worker.Serve();
}

}  // namespace procpool::internal
