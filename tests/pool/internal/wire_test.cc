// The wire between pool and worker (pool/internal/wire.h): frame encoding,
// the incremental decoder and its checks, and the calls-frame builder.

#include "pool/internal/wire.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace procpool::internal {
namespace {

HelloMsg SampleHello() {
  HelloMsg h;
  h.pid = 1234;
  PluginManifest p;
  p.path = "/x/libmath.so";
  p.name = "math";
  p.abi_version = 1;
  p.tasks = {TaskManifest{"add", 77, "int(int, int)"}};
  h.plugins = {p};
  return h;
}

std::vector<CallMsg> SampleCalls() {
  return {CallMsg{1, 0, "abc"}, CallMsg{2, 3, ""},
          CallMsg{3, 1, std::string("\0\x01\xff", 3)}};
}

std::vector<ResultMsg> SampleResults() {
  return {ResultMsg{1, 0, 500, "ok"}, ResultMsg{2, 2, 9, "boom"}};
}

// A header with the given fields, for hand-made malformed frames.
std::string Header(uint32_t len, uint16_t magic, uint8_t type,
                   uint8_t reserved) {
  std::string h(kFrameHeaderSize, '\0');
  for (int i = 0; i < 4; ++i) h[i] = static_cast<char>(len >> (8 * i));
  h[4] = static_cast<char>(magic & 0xff);
  h[5] = static_cast<char>(magic >> 8);
  h[6] = static_cast<char>(type);
  h[7] = static_cast<char>(reserved);
  return h;
}

// All frames the decoder can return now, as (type, payload copy).
struct OwnedFrame {
  FrameType type;
  std::string payload;
};
absl::StatusOr<std::vector<OwnedFrame>> Drain(FrameDecoder& d) {
  std::vector<OwnedFrame> out;
  while (true) {
    absl::StatusOr<std::optional<Frame>> f = d.Next();
    if (!f.ok()) return f.status();
    if (!f->has_value()) return out;
    out.push_back(OwnedFrame{(*f)->type, std::string((*f)->payload)});
  }
}

std::string ThreeFrames() {
  std::string bytes;
  AppendFrame(&bytes, FrameType::kHello, SampleHello());
  AppendFrame(&bytes, FrameType::kCalls, SampleCalls());
  AppendFrame(&bytes, FrameType::kResults, SampleResults());
  return bytes;
}

void ExpectThreeSampleFrames(const std::vector<OwnedFrame>& frames) {
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].type, FrameType::kHello);
  EXPECT_EQ(frames[1].type, FrameType::kCalls);
  EXPECT_EQ(frames[2].type, FrameType::kResults);

  absl::StatusOr<HelloMsg> hello =
      DecodeMessage<HelloMsg>(frames[0].payload, "hello");
  ASSERT_TRUE(hello.ok()) << hello.status();
  EXPECT_EQ(hello->pid, 1234);
  ASSERT_EQ(hello->plugins.size(), 1u);
  EXPECT_EQ(hello->plugins[0].name, "math");
  ASSERT_EQ(hello->plugins[0].tasks.size(), 1u);
  EXPECT_EQ(hello->plugins[0].tasks[0].signature, "int(int, int)");

  auto calls = DecodeMessage<std::vector<CallMsg>>(frames[1].payload, "calls");
  ASSERT_TRUE(calls.ok()) << calls.status();
  ASSERT_EQ(calls->size(), 3u);
  EXPECT_EQ((*calls)[2].args, std::string("\0\x01\xff", 3));

  auto results =
      DecodeMessage<std::vector<ResultMsg>>(frames[2].payload, "results");
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 2u);
  EXPECT_EQ((*results)[1].payload, "boom");
  EXPECT_EQ((*results)[0].run_ns, 500u);
}

// ---- Encoding ----

TEST(WireTest, FrameHeaderIsLittleEndianLengthMagicTypeAndZero) {
  std::string bytes;
  AppendFrameHeader(&bytes, FrameType::kResults, 0x01020304);
  EXPECT_EQ(bytes, Header(0x01020304, kFrameMagic, 3, 0));
}

TEST(WireTest, AppendFrameWritesThePayloadLength) {
  std::string bytes;
  AppendFrame(&bytes, FrameType::kHello, SampleHello());
  ASSERT_GT(bytes.size(), kFrameHeaderSize);
  const uint32_t len =
      static_cast<uint8_t>(bytes[0]) | static_cast<uint8_t>(bytes[1]) << 8 |
      static_cast<uint8_t>(bytes[2]) << 16 |
      static_cast<uint32_t>(static_cast<uint8_t>(bytes[3])) << 24;
  EXPECT_EQ(len, bytes.size() - kFrameHeaderSize);
}

// ---- Decoding ----

TEST(FrameDecoderTest, SplitsFramesGivenAllAtOnce) {
  FrameDecoder d;
  d.Append(ThreeFrames());
  auto frames = Drain(d);
  ASSERT_TRUE(frames.ok()) << frames.status();
  ExpectThreeSampleFrames(*frames);
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(FrameDecoderTest, SplitsFramesFedByteByByte) {
  const std::string bytes = ThreeFrames();
  FrameDecoder d;
  std::vector<OwnedFrame> frames;
  for (char c : bytes) {
    d.Append(std::string_view(&c, 1));
    auto got = Drain(d);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_LE(got->size(), 1u) << "one byte completes at most one frame";
    for (auto& f : *got) frames.push_back(std::move(f));
  }
  ExpectThreeSampleFrames(frames);
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(FrameDecoderTest, SplitsFramesWrittenThroughWritableSpace) {
  // The I/O thread's path: WritableSpace + Commit in odd-sized chunks.
  const std::string bytes = ThreeFrames();
  FrameDecoder d;
  std::vector<OwnedFrame> frames;
  for (size_t pos = 0; pos < bytes.size();) {
    size_t n = std::min<size_t>(7, bytes.size() - pos);
    char* space = d.WritableSpace(n);
    ASSERT_GE(d.writable(), n);
    std::copy(bytes.data() + pos, bytes.data() + pos + n, space);
    d.Commit(n);
    pos += n;
    auto got = Drain(d);
    ASSERT_TRUE(got.ok()) << got.status();
    for (auto& f : *got) frames.push_back(std::move(f));
  }
  ExpectThreeSampleFrames(frames);
}

TEST(FrameDecoderTest, WaitsForAWholeHeader) {
  FrameDecoder d;
  d.Append(Header(0, kFrameMagic, 1, 0).substr(0, kFrameHeaderSize - 1));
  auto f = d.Next();
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_FALSE(f->has_value());
}

TEST(FrameDecoderTest, AcceptsAnEmptyPayload) {
  FrameDecoder d;
  d.Append(Header(0, kFrameMagic, 2, 0));
  auto f = d.Next();
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE(f->has_value());
  EXPECT_EQ((*f)->type, FrameType::kCalls);
  EXPECT_TRUE((*f)->payload.empty());
}

TEST(FrameDecoderTest, RejectsBadMagic) {
  FrameDecoder d;
  d.Append(Header(0, 0x7071, 1, 0));
  EXPECT_EQ(d.Next().status().code(), absl::StatusCode::kDataLoss);
}

TEST(FrameDecoderTest, RejectsNonZeroReservedByte) {
  FrameDecoder d;
  d.Append(Header(0, kFrameMagic, 1, 1));
  EXPECT_EQ(d.Next().status().code(), absl::StatusCode::kDataLoss);
}

TEST(FrameDecoderTest, RejectsFrameTypeZero) {
  FrameDecoder d;
  d.Append(Header(0, kFrameMagic, 0, 0));
  EXPECT_EQ(d.Next().status().code(), absl::StatusCode::kDataLoss);
}

TEST(FrameDecoderTest, RejectsUnknownFrameType) {
  FrameDecoder d;
  d.Append(Header(0, kFrameMagic, 4, 0));
  EXPECT_EQ(d.Next().status().code(), absl::StatusCode::kDataLoss);
}

TEST(FrameDecoderTest, RejectsOversizeLengthFromTheHeaderAlone) {
  // The length is checked before any payload is buffered: the header is
  // enough to fail.
  FrameDecoder d(/*max_frame_bytes=*/1024);
  d.Append(Header(1025, kFrameMagic, 3, 0));
  absl::StatusOr<std::optional<Frame>> f = d.Next();
  EXPECT_FALSE(f.ok());
}

TEST(FrameDecoderTest, OversizeLengthIsReportedAsDataLoss) {
  // wire.h: "kDataLoss for a malformed header (bad magic, unknown type,
  // length over the limit)".
  FrameDecoder d(/*max_frame_bytes=*/1024);
  d.Append(Header(1025, kFrameMagic, 3, 0));
  EXPECT_EQ(d.Next().status().code(), absl::StatusCode::kDataLoss);
}

TEST(FrameDecoderTest, AcceptsAFrameExactlyAtTheLimit) {
  FrameDecoder d(/*max_frame_bytes=*/1024);
  d.Append(Header(1024, kFrameMagic, 3, 0));
  auto partial = d.Next();
  ASSERT_TRUE(partial.ok()) << partial.status();
  EXPECT_FALSE(partial->has_value());
  d.Append(std::string(1024, 'p'));
  auto f = d.Next();
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE(f->has_value());
  EXPECT_EQ((*f)->payload.size(), 1024u);
}

TEST(FrameDecoderTest, RejectsALengthThatWouldOverflowTheDefaultLimit) {
  FrameDecoder d;
  d.Append(Header(0xffffffffu, kFrameMagic, 3, 0));
  EXPECT_FALSE(d.Next().ok());
}

// ---- Messages ----

TEST(WireTest, DecodeMessageOfGarbageIsDataLoss) {
  auto hello = DecodeMessage<HelloMsg>("\x01\x02", "hello");
  EXPECT_EQ(hello.status().code(), absl::StatusCode::kDataLoss);
}

TEST(WireTest, DecodeMessageRejectsTrailingBytes) {
  std::string payload;
  internal::AppendArchive(&payload, SampleCalls());
  payload += "x";
  EXPECT_EQ(
      DecodeMessage<std::vector<CallMsg>>(payload, "calls").status().code(),
      absl::StatusCode::kDataLoss);
}

// ---- CallsFrameBuilder ----

TEST(CallsFrameBuilderTest, OutputDecodesAsCallMsgVector) {
  std::string bytes;
  CallsFrameBuilder b(&bytes);
  for (const CallMsg& c : SampleCalls()) b.Add(c.id, c.task, c.args);
  EXPECT_EQ(b.Finish(), 3u);

  FrameDecoder d;
  d.Append(bytes);
  auto frames = Drain(d);
  ASSERT_TRUE(frames.ok()) << frames.status();
  ASSERT_EQ(frames->size(), 1u);
  EXPECT_EQ((*frames)[0].type, FrameType::kCalls);
  auto calls =
      DecodeMessage<std::vector<CallMsg>>((*frames)[0].payload, "calls");
  ASSERT_TRUE(calls.ok()) << calls.status();
  const std::vector<CallMsg> want = SampleCalls();
  ASSERT_EQ(calls->size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ((*calls)[i].id, want[i].id);
    EXPECT_EQ((*calls)[i].task, want[i].task);
    EXPECT_EQ((*calls)[i].args, want[i].args);
  }
}

TEST(CallsFrameBuilderTest, BytesEqualAppendFrameOfTheSameCalls) {
  std::string built;
  CallsFrameBuilder b(&built);
  for (const CallMsg& c : SampleCalls()) b.Add(c.id, c.task, c.args);
  b.Finish();
  std::string reference;
  AppendFrame(&reference, FrameType::kCalls, SampleCalls());
  EXPECT_EQ(built, reference);
}

TEST(CallsFrameBuilderTest, EmptyBuilderDecodesAsNoCalls) {
  std::string bytes;
  CallsFrameBuilder b(&bytes);
  EXPECT_EQ(b.Finish(), 0u);
  FrameDecoder d;
  d.Append(bytes);
  auto frames = Drain(d);
  ASSERT_TRUE(frames.ok()) << frames.status();
  ASSERT_EQ(frames->size(), 1u);
  auto calls =
      DecodeMessage<std::vector<CallMsg>>((*frames)[0].payload, "calls");
  ASSERT_TRUE(calls.ok()) << calls.status();
  EXPECT_TRUE(calls->empty());
}

TEST(CallsFrameBuilderTest, AppendsAfterExistingBytes) {
  std::string bytes;
  AppendFrame(&bytes, FrameType::kHello, SampleHello());
  CallsFrameBuilder b(&bytes);
  b.Add(9, 1, "args");
  b.Finish();
  FrameDecoder d;
  d.Append(bytes);
  auto frames = Drain(d);
  ASSERT_TRUE(frames.ok()) << frames.status();
  ASSERT_EQ(frames->size(), 2u);
  EXPECT_EQ((*frames)[0].type, FrameType::kHello);
  auto calls =
      DecodeMessage<std::vector<CallMsg>>((*frames)[1].payload, "calls");
  ASSERT_TRUE(calls.ok()) << calls.status();
  ASSERT_EQ(calls->size(), 1u);
  EXPECT_EQ((*calls)[0].id, 9u);
  EXPECT_EQ((*calls)[0].args, "args");
}

// ---- Blocking reads over a socket ----

class SocketPairTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds_), 0);
  }
  void TearDown() override {
    for (int fd : fds_) {
      if (fd >= 0) ::close(fd);
    }
  }
  void CloseWriter() {
    ::close(fds_[0]);
    fds_[0] = -1;
  }
  int fds_[2] = {-1, -1};
};

TEST_F(SocketPairTest, ReadFrameReturnsEachFrameThenNulloptAtCleanEof) {
  ASSERT_TRUE(WriteAll(fds_[0], ThreeFrames()).ok());
  CloseWriter();
  FrameDecoder d;
  std::vector<OwnedFrame> frames;
  while (true) {
    auto f = ReadFrame(fds_[1], d);
    ASSERT_TRUE(f.ok()) << f.status();
    if (!f->has_value()) break;
    frames.push_back(OwnedFrame{(*f)->type, std::string((*f)->payload)});
    ASSERT_LE(frames.size(), 3u);
  }
  ExpectThreeSampleFrames(frames);
}

TEST_F(SocketPairTest, ReadFrameReportsEofInsideAFrameAsDataLoss) {
  std::string bytes = ThreeFrames();
  ASSERT_TRUE(WriteAll(fds_[0], std::string_view(bytes).substr(0, 5)).ok());
  CloseWriter();
  FrameDecoder d;
  EXPECT_EQ(ReadFrame(fds_[1], d).status().code(), absl::StatusCode::kDataLoss);
}

TEST(RegionRefTest, RoundTripsAndRejectsAnyOtherSize) {
  std::string bytes;
  AppendRegionRef(&bytes, RegionRef{0x0102030405060708ull, (uint64_t{1} << 40) + 3});
  ASSERT_EQ(bytes.size(), kRegionRefSize);
  absl::StatusOr<RegionRef> ref = ParseRegionRef(bytes);
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(ref->offset, 0x0102030405060708ull);
  EXPECT_EQ(ref->length, (uint64_t{1} << 40) + 3);
  EXPECT_EQ(ParseRegionRef(bytes.substr(1)).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(ParseRegionRef(bytes + "x").status().code(), absl::StatusCode::kDataLoss);
}

TEST(RegionRefTest, TheFlagsStayClearOfTaskIndicesAndResultCodes) {
  EXPECT_EQ(kRegionBit & kChunkBit, 0u);
  EXPECT_EQ(kRegionResult & static_cast<uint8_t>(ResultCode::kUnknownTask), 0);
}

}  // namespace
}  // namespace procpool::internal
