#include "pool/internal/wire.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "pool/internal/status_macros.h"

namespace procpool::internal {

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

CallsFrameBuilder::CallsFrameBuilder(std::string* out)
    : out_(out), start_(out->size()) {
  AppendFrameHeader(out_, FrameType::kCalls, 0);
  out_->append(sizeof(uint64_t), '\0');  // vector size, patched in Finish()
}

void CallsFrameBuilder::Add(uint64_t id, uint32_t task, std::string_view args) {
  // cereal's binary archive: fixed-width little-endian fields, strings as a
  // u64 length followed by the bytes.
  uint64_t len = args.size();
  char fixed[8 + 4 + 8];
  std::memcpy(fixed, &id, 8);
  std::memcpy(fixed + 8, &task, 4);
  std::memcpy(fixed + 12, &len, 8);
  out_->append(fixed, sizeof(fixed));
  out_->append(args.data(), args.size());
  ++count_;
}

size_t CallsFrameBuilder::Finish() {
  std::memcpy(out_->data() + start_ + kFrameHeaderSize, &count_, 8);
  uint32_t len = static_cast<uint32_t>(out_->size() - start_ - kFrameHeaderSize);
  for (int i = 0; i < 4; ++i) {
    (*out_)[start_ + i] = static_cast<char>(len >> (8 * i));
  }
  return count_;
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

}  // namespace procpool::internal
