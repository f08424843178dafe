// The checked decoders read exactly what cereal writes, and refuse lengths
// and counts a frame cannot hold before allocating anything.

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "pool/internal/wire.h"
#include "tasks/serialize.h"

namespace procpool::internal {
namespace {

std::string Archive(const auto& msg) {
  std::string out;
  internal::AppendArchive(&out, msg);
  return out;
}

TEST(CheckedDecoderTest, HelloRoundTripsFromCereal) {
  HelloMsg h;
  h.pid = 42;
  h.plugins.push_back(PluginManifest{
      "/p/libmath.so", "math", 1,
      {TaskManifest{"add", 7, "int(int, int)"}, TaskManifest{"noop", 9, "int(int)"}}});
  absl::StatusOr<HelloMsg> d = DecodeHello(Archive(h));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->pid, 42);
  ASSERT_EQ(d->plugins.size(), 1u);
  ASSERT_EQ(d->plugins[0].tasks.size(), 2u);
  EXPECT_EQ(d->plugins[0].tasks[1].name, "noop");
  EXPECT_EQ(d->plugins[0].tasks[1].fingerprint, 9u);
  EXPECT_EQ(d->plugins[0].tasks[0].signature, "int(int, int)");
}

TEST(CheckedDecoderTest, CallsAndResultsRoundTripFromCereal) {
  std::vector<CallMsg> calls = {{1, 0, "ab"}, {2, 3, std::string(1000, 'x')}};
  auto c = DecodeCalls(Archive(calls));
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->size(), 2u);
  EXPECT_EQ((*c)[1].id, 2u);
  EXPECT_EQ((*c)[1].task, 3u);
  EXPECT_EQ((*c)[1].args.size(), 1000u);
  std::vector<ResultMsg> results = {{5, 2, 77, "payload"}};
  auto r = DecodeResults(Archive(results));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)[0].code, 2);
  EXPECT_EQ((*r)[0].run_ns, 77u);
  EXPECT_EQ((*r)[0].payload, "payload");
}

TEST(CheckedDecoderTest, CountLargerThanTheFrameIsDataLossWithoutAllocating) {
  std::string bytes(8, '\0');
  uint64_t n = uint64_t{1} << 60;
  std::memcpy(bytes.data(), &n, 8);
  EXPECT_EQ(DecodeCalls(bytes).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeResults(bytes).status().code(), absl::StatusCode::kDataLoss);
}

TEST(CheckedDecoderTest, StringLengthPastTheEndIsDataLoss) {
  std::vector<CallMsg> calls = {{1, 0, "abcdef"}};
  std::string bytes = Archive(calls);
  bytes.resize(bytes.size() - 2);  // the string claims 6 bytes, 4 remain
  absl::StatusOr<std::vector<CallMsg>> c = DecodeCalls(bytes);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(c.status().message().find("call.args"), std::string::npos) << c.status();
}

TEST(CheckedDecoderTest, TrailingBytesAreDataLoss) {
  std::string bytes = Archive(std::vector<ResultMsg>{}) + "x";
  EXPECT_EQ(DecodeResults(bytes).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace procpool::internal
