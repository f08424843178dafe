#include "pool/internal/wire.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <type_traits>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "pool/internal/status_macros.h"

namespace procpool::internal {

namespace {

void PutU32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}

void PutU32(std::string* out, size_t offset, uint32_t v) { PutU32(out->data() + offset, v); }

uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

// Reads cereal's binary layout (little-endian fixed-width fields; strings
// and vectors as a u64 count followed by the elements) without trusting it.
class CheckedReader {
 public:
  CheckedReader(std::string_view data, const char* message)
      : data_(data), message_(message) {}

  template <class T>
  bool Fixed(T* out, const char* field) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (data_.size() < sizeof(T)) return Fail(field, "truncated");
    std::memcpy(out, data_.data(), sizeof(T));
    data_.remove_prefix(sizeof(T));
    return true;
  }

  bool String(std::string* out, const char* field) {
    std::string_view view;
    if (!View(&view, field)) return false;
    out->assign(view.data(), view.size());
    return true;
  }

  // A string's bytes, in place.
  bool View(std::string_view* out, const char* field) {
    uint64_t n;
    if (!Fixed(&n, field)) return false;
    if (n > data_.size()) return Fail(field, "length runs past the frame");
    *out = data_.substr(0, static_cast<size_t>(n));
    data_.remove_prefix(static_cast<size_t>(n));
    return true;
  }

  // A element count; each element takes at least `min_size` bytes.
  bool Count(uint64_t* n, size_t min_size, const char* field) {
    if (!Fixed(n, field)) return false;
    if (*n > data_.size() / min_size) {
      return Fail(field, "count is larger than the frame can hold");
    }
    return true;
  }

  absl::Status Finish() {
    if (!error_.ok()) return error_;
    if (!data_.empty()) {
      return absl::DataLossError(absl::StrCat(message_, " message has ",
                                              data_.size(), " trailing bytes"));
    }
    return absl::OkStatus();
  }

 private:
  bool Fail(const char* field, const char* what) {
    if (error_.ok()) {
      error_ = absl::DataLossError(
          absl::StrCat(message_, " message: field '", field, "': ", what));
    }
    return false;
  }

  std::string_view data_;
  const char* message_;
  absl::Status error_;
};

}  // namespace

absl::StatusOr<HelloMsg> DecodeHello(std::string_view payload) {
  CheckedReader r(payload, "hello");
  HelloMsg m;
  uint64_t plugins = 0;
  if (r.Fixed(&m.pid, "pid") && r.Fixed(&m.error_code, "error_code") &&
      r.String(&m.error, "error") &&
      r.Count(&plugins, 8 + 8 + 4 + 8, "plugins")) {
    for (uint64_t i = 0; i < plugins; ++i) {
      PluginManifest& p = m.plugins.emplace_back();
      uint64_t tasks = 0;
      if (!(r.String(&p.path, "plugin.path") && r.String(&p.name, "plugin.name") &&
            r.Fixed(&p.abi_version, "plugin.abi_version") &&
            r.Count(&tasks, 8 + 8 + 8, "plugin.tasks"))) {
        break;
      }
      bool ok = true;
      for (uint64_t j = 0; ok && j < tasks; ++j) {
        TaskManifest& t = p.tasks.emplace_back();
        ok = r.String(&t.name, "task.name") &&
             r.Fixed(&t.fingerprint, "task.fingerprint") &&
             r.String(&t.signature, "task.signature");
      }
      if (!ok) break;
    }
  }
  PROCPOOL_RETURN_IF_ERROR(r.Finish());
  return m;
}

absl::StatusOr<std::vector<CallView>> DecodeCallViews(std::string_view payload) {
  CheckedReader r(payload, "calls");
  std::vector<CallView> calls;
  uint64_t n = 0;
  if (r.Count(&n, 8 + 4 + 8, "calls")) {
    calls.reserve(static_cast<size_t>(n));
    for (uint64_t i = 0; i < n; ++i) {
      CallView& c = calls.emplace_back();
      if (!(r.Fixed(&c.id, "call.id") && r.Fixed(&c.task, "call.task") &&
            r.View(&c.args, "call.args"))) {
        break;
      }
    }
  }
  PROCPOOL_RETURN_IF_ERROR(r.Finish());
  return calls;
}

absl::StatusOr<std::vector<CallMsg>> DecodeCalls(std::string_view payload) {
  PROCPOOL_ASSIGN_OR_RETURN(std::vector<CallView> views, DecodeCallViews(payload));
  std::vector<CallMsg> calls(views.size());
  for (size_t i = 0; i < views.size(); ++i) {
    calls[i].id = views[i].id;
    calls[i].task = views[i].task;
    calls[i].args.assign(views[i].args.data(), views[i].args.size());
  }
  return calls;
}

absl::StatusOr<std::vector<ResultMsg>> DecodeResults(std::string_view payload) {
  CheckedReader r(payload, "results");
  std::vector<ResultMsg> results;
  uint64_t n = 0;
  if (r.Count(&n, 8 + 1 + 8 + 8, "results")) {
    results.reserve(static_cast<size_t>(n));
    for (uint64_t i = 0; i < n; ++i) {
      ResultMsg& m = results.emplace_back();
      if (!(r.Fixed(&m.id, "result.id") && r.Fixed(&m.code, "result.code") &&
            r.Fixed(&m.run_ns, "result.run_ns") &&
            r.String(&m.payload, "result.payload"))) {
        break;
      }
    }
  }
  PROCPOOL_RETURN_IF_ERROR(r.Finish());
  return results;
}

RemoteException DecodeException(std::string_view payload) {
  RemoteException e;
  try {
    e = internal::DecodeArchive<RemoteException>(payload);
  } catch (...) {
    e = RemoteException{};
  }
  return e;
}

namespace {
// The keys TaskError (pool/future.h) reads.
constexpr char kExceptionTypeKey[] = "procpool/exception_type";
constexpr char kExceptionWhatKey[] = "procpool/exception_what";
}  // namespace

void SetExceptionPayloads(absl::Status& status, std::string_view type,
                          std::string_view what) {
  status.SetPayload(kExceptionTypeKey, absl::Cord(absl::string_view(type.data(), type.size())));
  status.SetPayload(kExceptionWhatKey, absl::Cord(absl::string_view(what.data(), what.size())));
}

absl::Status AnswerStatus(uint8_t code, std::string_view payload,
                          std::string_view task) {
  const absl::string_view t(task.data(), task.size());
  const absl::string_view p(payload.data(), payload.size());
  switch (static_cast<ResultCode>(code)) {
    case ResultCode::kOk:
      return absl::OkStatus();
    case ResultCode::kBadArgs:
      return absl::InvalidArgumentError(absl::StrCat(t, ": ", p));
    case ResultCode::kException: {
      RemoteException e = DecodeException(payload);
      absl::Status s =
          absl::UnknownError(absl::StrCat(t, " raised ", e.type, ": ", e.what));
      SetExceptionPayloads(s, e.type, e.what);
      return s;
    }
    case ResultCode::kStatus:
      return DecodeStatus(payload);
    default:
      return absl::InternalError(absl::StrCat(t, ": worker could not run it: ", p));
  }
}

namespace {
struct EncodedStatus {
  uint32_t code = 0;
  std::string message, type, what;
  template <class A>
  void serialize(A& ar) {
    ar(code, message, type, what);
  }
};
}  // namespace

std::string EncodeStatus(const absl::Status& status) {
  EncodedStatus e;
  e.code = static_cast<uint32_t>(status.code());
  e.message = std::string(status.message());
  if (auto p = status.GetPayload(kExceptionTypeKey)) e.type = std::string(*p);
  if (auto p = status.GetPayload(kExceptionWhatKey)) e.what = std::string(*p);
  std::string out;
  internal::AppendArchive(&out, e);
  return out;
}

absl::Status DecodeStatus(std::string_view payload) {
  absl::StatusOr<EncodedStatus> e = DecodeMessage<EncodedStatus>(payload, "status");
  if (!e.ok()) return e.status();
  if (e->code == 0) return absl::OkStatus();
  absl::Status s(static_cast<absl::StatusCode>(e->code), e->message);
  if (!e->type.empty() || !e->what.empty()) SetExceptionPayloads(s, e->type, e->what);
  return s;
}

void AppendFrameHeader(std::string* out, FrameType type, size_t payload_size) {
  char h[kFrameHeaderSize];
  uint32_t len = static_cast<uint32_t>(payload_size);
  for (int i = 0; i < 4; ++i) h[i] = static_cast<char>(len >> (8 * i));
  h[4] = static_cast<char>(kFrameMagic & 0xff);
  h[5] = static_cast<char>(kFrameMagic >> 8);
  h[6] = static_cast<char>(type);
  h[7] = 0;
  out->append(h, sizeof(h));
}

VectorFrameBuilder::VectorFrameBuilder(std::string* out, FrameType type)
    : out_(out), start_(out->size()) {
  AppendFrameHeader(out_, type, 0);
  out_->append(sizeof(uint64_t), '\0');  // vector size, patched in Finish()
}

size_t VectorFrameBuilder::Finish() {
  std::memcpy(out_->data() + start_ + kFrameHeaderSize, &count_, 8);
  PutU32(out_, start_, static_cast<uint32_t>(out_->size() - start_ - kFrameHeaderSize));
  return count_;
}

// Records are cereal's binary archive: fixed-width little-endian fields,
// strings as a u64 length followed by the bytes.

void CallsFrameBuilder::Add(uint64_t id, uint32_t task, std::string_view args) {
  uint64_t len = args.size();
  char fixed[8 + 4 + 8];
  std::memcpy(fixed, &id, 8);
  std::memcpy(fixed + 8, &task, 4);
  std::memcpy(fixed + 12, &len, 8);
  out_->append(fixed, sizeof(fixed));
  out_->append(args.data(), args.size());
  ++count_;
}

// ResultMsg: id u64, code u8, run_ns u64, payload (u64 length, bytes).
constexpr size_t kResultFixedSize = ResultsFrameBuilder::kRecordHeaderSize;

size_t ResultsFrameBuilder::BeginResult(uint64_t id) {
  const size_t record = out_->size();
  out_->append(reinterpret_cast<const char*>(&id), 8);
  out_->append(kResultFixedSize - 8, '\0');
  return record;
}

void ResultsFrameBuilder::EndResult(size_t record, uint8_t code, uint64_t run_ns) {
  const uint64_t length = out_->size() - record - kResultFixedSize;
  (*out_)[record + 8] = static_cast<char>(code);
  std::memcpy(out_->data() + record + 9, &run_ns, 8);
  std::memcpy(out_->data() + record + 17, &length, 8);
  ++count_;
}

std::string ResultsFrameBuilder::TakeLastResult(size_t record) {
  std::string bytes = out_->substr(record);
  out_->resize(record);
  --count_;
  return bytes;
}

void ResultsFrameBuilder::AddResultBytes(std::string_view record_bytes) {
  out_->append(record_bytes.data(), record_bytes.size());
  ++count_;
}

char* FrameDecoder::WritableSpace(size_t min_size) {
  if (begin_ == end_) begin_ = end_ = 0;
  if (buf_.size() - end_ < min_size) {
    // Compact before growing.
    if (begin_ > 0) {
      std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (buf_.size() - end_ < min_size) {
      buf_.resize(std::max(buf_.size() * 2, end_ + min_size));
    }
  }
  return buf_.data() + end_;
}

void FrameDecoder::Append(std::string_view bytes) {
  std::memcpy(WritableSpace(bytes.size()), bytes.data(), bytes.size());
  Commit(bytes.size());
}

absl::StatusOr<std::optional<Frame>> FrameDecoder::Next() {
  size_t avail = end_ - begin_;
  if (avail < kFrameHeaderSize) return std::nullopt;
  const unsigned char* h =
      reinterpret_cast<const unsigned char*>(buf_.data() + begin_);
  uint32_t len = uint32_t{h[0]} | uint32_t{h[1]} << 8 | uint32_t{h[2]} << 16 |
                 uint32_t{h[3]} << 24;
  uint16_t magic = static_cast<uint16_t>(h[4] | h[5] << 8);
  uint8_t type = h[6];
  if (magic != kFrameMagic || h[7] != 0) {
    return absl::DataLossError("frame header has a bad magic number");
  }
  if (type < static_cast<uint8_t>(FrameType::kHello) ||
      type > static_cast<uint8_t>(FrameType::kResults)) {
    return absl::DataLossError(absl::StrCat("unknown frame type ", type));
  }
  if (len > max_frame_bytes_) {
    return absl::DataLossError(
        absl::StrCat("frame of ", len, " bytes exceeds the limit of ",
                     max_frame_bytes_, " bytes"));
  }
  if (avail < kFrameHeaderSize + len) {
    // Make room for the rest now, so the reader can fill it in one go.
    WritableSpace(kFrameHeaderSize + len - avail);
    return std::nullopt;
  }
  Frame f{static_cast<FrameType>(type),
          std::string_view(buf_.data() + begin_ + kFrameHeaderSize, len)};
  begin_ += kFrameHeaderSize + len;
  return std::optional<Frame>(f);
}

absl::Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus("write", errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Frame>> ReadFrame(int fd, FrameDecoder& decoder) {
  while (true) {
    PROCPOOL_ASSIGN_OR_RETURN(std::optional<Frame> frame, decoder.Next());
    if (frame) return frame;
    char* space = decoder.WritableSpace(64 * 1024);
    ssize_t n = ::read(fd, space, 64 * 1024);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus("read", errno);
    }
    if (n == 0) {
      if (decoder.buffered() == 0) return std::nullopt;
      return absl::DataLossError("connection closed inside a frame");
    }
    decoder.Commit(static_cast<size_t>(n));
  }
}

void AppendRegionRef(std::string* out, RegionRef ref) {
  char bytes[kRegionRefSize];
  for (int i = 0; i < 8; ++i) {
    bytes[i] = static_cast<char>(ref.offset >> (8 * i));
    bytes[8 + i] = static_cast<char>(ref.length >> (8 * i));
  }
  out->append(bytes, sizeof(bytes));
}

absl::StatusOr<RegionRef> ParseRegionRef(std::string_view bytes) {
  if (bytes.size() != kRegionRefSize) {
    return absl::DataLossError(absl::StrCat(
        "a payload region reference has ", bytes.size(), " bytes, not ",
        kRegionRefSize));
  }
  RegionRef ref;
  for (int i = 7; i >= 0; --i) {
    ref.offset = (ref.offset << 8) | static_cast<unsigned char>(bytes[i]);
    ref.length = (ref.length << 8) | static_cast<unsigned char>(bytes[8 + i]);
  }
  return ref;
}

size_t BeginChunkItem(std::string* out) {
  size_t offset = out->size();
  out->append(4, '\0');
  return offset;
}

void PatchChunkLength(std::string* out, size_t offset) {
  PutU32(out, offset, static_cast<uint32_t>(out->size() - offset - 4));
}

size_t BeginChunkResult(std::string* out) {
  size_t offset = out->size();
  out->append(4, '\0');
  return offset;
}

size_t BeginChunkAnswer(std::string* out) {
  size_t offset = out->size();
  out->append(5, '\0');
  return offset;
}

void EndChunkAnswer(std::string* out, size_t answer, uint8_t code) {
  (*out)[answer] = static_cast<char>(code);
  PutU32(out, answer + 1, static_cast<uint32_t>(out->size() - answer - 5));
}

void EndChunkResult(std::string* out, size_t result, uint32_t answered) {
  PutU32(out, result, answered);
}

void EndOneAnswerChunkResult(char* result, size_t size, size_t answer, uint8_t code) {
  result[answer] = static_cast<char>(code);
  PutU32(result + answer + 1, static_cast<uint32_t>(size - answer - 5));
  PutU32(result, 1);
}

absl::StatusOr<std::vector<std::string_view>> SplitChunkItems(std::string_view args) {
  std::vector<std::string_view> items;
  size_t pos = 0;
  while (pos < args.size()) {
    if (args.size() - pos < 4) {
      return absl::DataLossError("chunk: truncated item length");
    }
    uint32_t len = GetU32(args.data() + pos);
    pos += 4;
    if (len > args.size() - pos) {
      return absl::DataLossError(absl::StrCat("chunk: item of ", len,
                                              " bytes runs past the end"));
    }
    items.push_back(args.substr(pos, len));
    pos += len;
  }
  return items;
}

absl::StatusOr<std::vector<ChunkAnswer>> ParseChunkResult(std::string_view payload,
                                                          size_t max_items) {
  if (payload.size() < 4) return absl::DataLossError("chunk result: no count");
  const uint32_t n = GetU32(payload.data());
  if (n > max_items) {
    return absl::DataLossError(absl::StrCat("chunk result: answers ", n,
                                            " items of ", max_items));
  }
  std::vector<ChunkAnswer> answers;
  answers.reserve(n);
  size_t pos = 4;
  for (uint32_t i = 0; i < n; ++i) {
    if (payload.size() - pos < 5) {
      return absl::DataLossError("chunk result: truncated answer header");
    }
    uint8_t code = static_cast<uint8_t>(payload[pos]);
    uint32_t len = GetU32(payload.data() + pos + 1);
    pos += 5;
    if (len > payload.size() - pos) {
      return absl::DataLossError(absl::StrCat("chunk result: answer of ", len,
                                              " bytes runs past the end"));
    }
    answers.push_back(ChunkAnswer{code, payload.substr(pos, len)});
    pos += len;
  }
  if (pos != payload.size()) {
    return absl::DataLossError("chunk result: trailing bytes");
  }
  return answers;
}

}  // namespace procpool::internal
