// The wire between the pool and a worker: length-prefixed frames over a
// stream socket, each payload a cereal binary archive of one message.
//
//   frame := u32 payload_length (little endian)
//            u16 magic 0x7070 ("pp")
//            u8  type (FrameType)
//            u8  reserved (0)
//            payload_length bytes
//
// The decoder trusts nothing: it checks magic, type and the length against a
// hard limit before buffering a payload.
//
// Not thread-safe: each decoder and buffer belongs to one connection owner.

#ifndef PROCPOOL_POOL_INTERNAL_WIRE_H_
#define PROCPOOL_POOL_INTERNAL_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tasks/serialize.h"

namespace procpool::internal {

inline constexpr size_t kFrameHeaderSize = 8;
inline constexpr uint16_t kFrameMagic = 0x7070;
inline constexpr size_t kDefaultMaxFrameBytes = size_t{1} << 30;

enum class FrameType : uint8_t {
  kHello = 1,    // worker -> pool: HelloMsg
  kCalls = 2,    // pool -> worker: std::vector<CallMsg>
  kResults = 3,  // worker -> pool: std::vector<ResultMsg>
};

// ---- Messages ----

struct TaskManifest {
  std::string name;
  uint64_t fingerprint = 0;
  std::string signature;
  template <class A>
  void serialize(A& ar) {
    ar(name, fingerprint, signature);
  }
};

struct PluginManifest {
  std::string path;
  std::string name;
  uint32_t abi_version = 0;
  std::vector<TaskManifest> tasks;
  template <class A>
  void serialize(A& ar) {
    ar(path, name, abi_version, tasks);
  }
};

// First frame a worker sends. `error` is non-empty when the worker could not
// load its plugins; the worker exits right after sending it.
struct HelloMsg {
  int32_t pid = 0;
  uint32_t error_code = 0;  // absl::StatusCode when error is set
  std::string error;
  std::vector<PluginManifest> plugins;
  template <class A>
  void serialize(A& ar) {
    ar(pid, error_code, error, plugins);
  }
};

// One task to run. `task` indexes the tasks of all plugins, in load order.
struct CallMsg {
  uint64_t id = 0;
  uint32_t task = 0;
  std::string args;  // cereal archive of the argument tuple
  template <class A>
  void serialize(A& ar) {
    ar(id, task, args);
  }
};

// A chunk: several calls of one task in one CallMsg, so that a map of tiny
// tasks pays the per-call costs (ids, queues, futures) once per chunk
// instead of once per item. CallMsg::task carries kChunkBit, and
//
//   chunk args   := item*                      item := u32 length, bytes
//   chunk result := u32 answered, (u8 code, u32 length, bytes)*
//
// (lengths little endian; each item's bytes are the archive of its
// arguments, each answer's what a single call's ResultMsg payload would
// be, with code a ResultCode). The worker runs the items in order and may
// answer only the first `answered` of them (to keep a frame under its
// limit, or because it is retiring); the pool sends the rest again.
inline constexpr uint32_t kChunkBit = uint32_t{1} << 31;

// Large payloads through shared memory (payload_region.h). A CallMsg whose
// task carries kRegionBit has as its args a RegionRef into the worker's
// call region instead of the argument bytes; the pool writes one such call
// at a time per worker and reuses the space once the call is answered. A
// ResultMsg whose code carries kRegionResult has as its payload a RegionRef
// into the worker's result region; the worker sets
// WorkerStatusPage::result_region_busy before writing there, and writes
// there again only once the pool has cleared it (when it no longer needs
// the bytes). A ResultMsg whose code carries kRegionResultInCall has as its
// payload a RegionRef into the worker's call region instead: the answer to
// a call whose arguments came through that region, written over them once
// the task has returned, within what the pool had mapped (the worker never
// grows the call region). The pool then writes no call there until it no
// longer needs those bytes.
inline constexpr uint32_t kRegionBit = uint32_t{1} << 30;
inline constexpr uint8_t kRegionResult = 0x80;
inline constexpr uint8_t kRegionResultInCall = 0x40;

struct RegionRef {
  uint64_t offset = 0;
  uint64_t length = 0;
};
inline constexpr size_t kRegionRefSize = 16;
// Appends the 16 bytes of `ref` (little endian).
void AppendRegionRef(std::string* out, RegionRef ref);
// kDataLoss unless `bytes` is exactly a RegionRef.
absl::StatusOr<RegionRef> ParseRegionRef(std::string_view bytes);

// Appends one item to chunk args. `archive` is filled by the caller: this
// reserves the length and returns its offset, for PatchChunkLength.
size_t BeginChunkItem(std::string* out);
void PatchChunkLength(std::string* out, size_t offset);

// Splits chunk args into items (views into `args`). kDataLoss if the
// lengths do not add up.
absl::StatusOr<std::vector<std::string_view>> SplitChunkItems(std::string_view args);

// Writes a chunk result in place: BeginChunkResult reserves the count,
// each answer is BeginChunkAnswer, its bytes appended, EndChunkAnswer; then
// EndChunkResult with the number of answers.
size_t BeginChunkResult(std::string* out);
size_t BeginChunkAnswer(std::string* out);
void EndChunkAnswer(std::string* out, size_t answer, uint8_t code);
void EndChunkResult(std::string* out, size_t result, uint32_t answered);
// The same two for a chunk result of one answer written elsewhere: the
// `size` bytes at `result` (from BeginChunkResult on), whose answer began
// at result[answer].
void EndOneAnswerChunkResult(char* result, size_t size, size_t answer, uint8_t code);

struct ChunkAnswer {
  uint8_t code;  // ResultCode
  std::string_view bytes;
};
// Parses a chunk result; kDataLoss if malformed or if it answers more than
// `max_items` items.
absl::StatusOr<std::vector<ChunkAnswer>> ParseChunkResult(std::string_view payload,
                                                          size_t max_items);

enum class ResultCode : uint8_t {
  kOk = 0,          // payload: archive of the result
  kBadArgs = 1,     // payload: message
  kException = 2,   // payload: archive of (type, what)
  kUnknownTask = 3, // payload: message
  // The worker skipped the call: the pool cancelled it or took it back
  // before it started (claim_table.h). No payload.
  kSkipped = 4,
  // Never sent by a worker: an outcome decided elsewhere (an MPI agent's
  // pool), carried as EncodeStatus's bytes.
  kStatus = 5,
};

// A Status (code, message and the exception payloads TaskError reads) as
// the payload of a kStatus answer, and back. kDataLoss if malformed.
std::string EncodeStatus(const absl::Status& status);
absl::Status DecodeStatus(std::string_view payload);

struct ResultMsg {
  uint64_t id = 0;
  uint8_t code = 0;  // ResultCode
  uint64_t run_ns = 0;
  std::string payload;
  template <class A>
  void serialize(A& ar) {
    ar(id, code, run_ns, payload);
  }
};

// ---- Encoding ----

// Appends a frame header for a payload of `payload_size` bytes.
void AppendFrameHeader(std::string* out, FrameType type, size_t payload_size);

// Appends a whole frame holding the archive of `msg`.
template <class Msg>
void AppendFrame(std::string* out, FrameType type, const Msg& msg) {
  size_t start = out->size();
  AppendFrameHeader(out, type, 0);
  internal::AppendArchive(out, msg);
  size_t len = out->size() - start - kFrameHeaderSize;
  uint32_t le = static_cast<uint32_t>(len);
  for (int i = 0; i < 4; ++i) (*out)[start + i] = static_cast<char>(le >> (8 * i));
}

// Builds, in place, a frame whose message is a std::vector of records (the
// bytes of AppendFrame(type, std::vector<Msg>)): the header and the
// element count are written first and patched by Finish(); the records are
// appended in between by the subclasses below.
class VectorFrameBuilder {
 public:
  // Patches the header and the count. Returns the number of records.
  size_t Finish();
  size_t count() const { return count_; }

 protected:
  VectorFrameBuilder(std::string* out, FrameType type);
  std::string* out_;
  size_t start_;
  uint64_t count_ = 0;
};

// A kCalls frame, without materialising CallMsg objects.
class CallsFrameBuilder : public VectorFrameBuilder {
 public:
  explicit CallsFrameBuilder(std::string* out)
      : VectorFrameBuilder(out, FrameType::kCalls) {}
  void Add(uint64_t id, uint32_t task, std::string_view args);
};

// A kResults frame whose payloads are written straight into it: between
// BeginResult and EndResult, the result's payload is appended to the
// frame's string (e.g. by a task through the plugin ABI).
class ResultsFrameBuilder : public VectorFrameBuilder {
 public:
  explicit ResultsFrameBuilder(std::string* out)
      : VectorFrameBuilder(out, FrameType::kResults) {}
  // Bytes of a result record before its payload (id, code, run_ns, length).
  static constexpr size_t kRecordHeaderSize = 8 + 1 + 8 + 8;
  // Starts the ResultMsg of call `id`; returns where it starts. Its
  // payload starts kRecordHeaderSize bytes later.
  size_t BeginResult(uint64_t id);
  // Completes the result begun at `record`: its payload is everything
  // appended since.
  void EndResult(size_t record, uint8_t code, uint64_t run_ns);
  // Removes the last result (begun at `record`) and returns its bytes, for
  // AddResultBytes on another frame.
  std::string TakeLastResult(size_t record);
  void AddResultBytes(std::string_view record_bytes);
};

// Decodes the archive of a message with cereal itself; errors are kDataLoss
// naming `what`. Trusts length fields (cereal does): use it on bytes this
// process wrote, and the checked decoders below on bytes from a peer.
template <class Msg>
absl::StatusOr<Msg> DecodeMessage(std::string_view payload, std::string_view what) {
  try {
    return internal::DecodeArchive<Msg>(payload);
  } catch (const std::exception& e) {
    return absl::DataLossError(
        std::string(what) + " message does not decode: " + e.what());
  }
}

// Checked decoders for the three messages. They read the same bytes cereal
// writes, but check every length and count against the bytes that remain
// before allocating anything, so a hostile or corrupt frame costs at most
// its own size. Errors are kDataLoss naming the message and the field.
absl::StatusOr<HelloMsg> DecodeHello(std::string_view payload);
absl::StatusOr<std::vector<CallMsg>> DecodeCalls(std::string_view payload);
// The same calls with their arguments left in `payload` (no copy).
struct CallView {
  uint64_t id = 0;
  uint32_t task = 0;
  std::string_view args;
};
absl::StatusOr<std::vector<CallView>> DecodeCallViews(std::string_view payload);
absl::StatusOr<std::vector<ResultMsg>> DecodeResults(std::string_view payload);

// The (type name, what()) pair a task's exception travels as
// (PROCPOOL_INVOKE_EXCEPTION). Undecodable bytes give "unknown exception".
struct RemoteException {
  std::string type = "unknown exception";
  std::string what;
  template <class A>
  void serialize(A& ar) {
    ar(type, what);
  }
};
RemoteException DecodeException(std::string_view payload);

// What a task's answer means for its caller: OK for kOk; otherwise the
// error, its message starting with `task` (e.g. "task 'add' (input #3)"):
// kInvalidArgument for undecodable arguments, kUnknown for an exception
// (with its type and what() as the status payloads TaskError reads),
// kInternal for a task the worker does not have.
absl::Status AnswerStatus(uint8_t code, std::string_view payload,
                          std::string_view task);

// Attaches a task exception's type and what() to `status`, under the
// payload keys TaskError (pool/future.h) reads.
void SetExceptionPayloads(absl::Status& status, std::string_view type,
                          std::string_view what);

// ---- Decoding ----

struct Frame {
  FrameType type;
  std::string_view payload;  // valid until the next call on the decoder
};

// Splits a byte stream into frames.
class FrameDecoder {
 public:
  explicit FrameDecoder(size_t max_frame_bytes = kDefaultMaxFrameBytes)
      : max_frame_bytes_(max_frame_bytes) {}

  // Space to read into: at least `min_size` bytes at the returned pointer.
  char* WritableSpace(size_t min_size);
  // Bytes that may be written at the WritableSpace() pointer.
  size_t writable() const { return buf_.size() - end_; }
  // Records that `n` bytes were written into WritableSpace().
  void Commit(size_t n) { end_ += n; }
  // Convenience for tests and fuzzers.
  void Append(std::string_view bytes);

  // The next complete frame, std::nullopt if more bytes are needed, or
  // kDataLoss for a malformed header (bad magic, unknown type, length over
  // the limit). After an error the stream is unusable.
  absl::StatusOr<std::optional<Frame>> Next();

  // Bytes buffered but not yet returned as frames.
  size_t buffered() const { return end_ - begin_; }

 private:
  size_t max_frame_bytes_;
  std::string buf_;
  size_t begin_ = 0;
  size_t end_ = 0;
};

// ---- Blocking I/O (the worker's side) ----

// Writes all of `data`, retrying on EINTR and short writes.
absl::Status WriteAll(int fd, std::string_view data);

// Reads one frame into `decoder`, blocking. Returns std::nullopt on a clean
// EOF at a frame boundary; kDataLoss on EOF inside a frame.
absl::StatusOr<std::optional<Frame>> ReadFrame(int fd, FrameDecoder& decoder);

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_WIRE_H_
