// PayloadRegion: one side writes and grows, the other maps what it is told
// about, and a reference beyond what was written is an error, not a crash.

#include "pool/internal/payload_region.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "pool/internal/unique_fd.h"

namespace procpool::internal {
namespace {

// The reader's side: its own descriptor for the writer's memfd, as a
// worker gets it.
PayloadRegion ReaderOf(const PayloadRegion& writer) {
  return PayloadRegion(UniqueFd(::fcntl(writer.fd(), F_DUPFD_CLOEXEC, 0)));
}

TEST(PayloadRegionTest, TheReaderSeesWhatTheWriterWrote) {
  auto writer = PayloadRegion::Create("test");
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE(writer->Reserve(100).ok());
  std::memcpy(writer->data(), "hello, region", 13);
  PayloadRegion reader = ReaderOf(*writer);
  auto map = reader.Covering(7, 6);
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_EQ(std::string((*map)->data() + 7, 6), "region");
}

TEST(PayloadRegionTest, GrowingKeepsOldBytesAndOldMappingsValid) {
  auto writer = PayloadRegion::Create("test");
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer->Reserve(10).ok());
  std::memcpy(writer->data(), "0123456789", 10);
  PayloadRegion reader = ReaderOf(*writer);
  auto small = reader.Covering(0, 10);
  ASSERT_TRUE(small.ok());
  const size_t first_size = (*small)->size();

  const size_t big = first_size * 3 + 5;
  ASSERT_TRUE(writer->Reserve(big).ok());
  EXPECT_GE(writer->mapping()->size(), big);
  writer->data()[big - 1] = 'z';
  EXPECT_EQ(std::string(writer->data(), 10), "0123456789");

  auto large = reader.Covering(big - 1, 1);
  ASSERT_TRUE(large.ok()) << large.status();
  EXPECT_EQ((*large)->data()[big - 1], 'z');
  // The mapping handed out before the growth still reads the same file.
  EXPECT_EQ(std::string((*small)->data(), 10), "0123456789");
}

TEST(PayloadRegionTest, AReferenceBeyondTheFileIsDataLoss) {
  auto writer = PayloadRegion::Create("test");
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(writer->Reserve(4096).ok());
  PayloadRegion reader = ReaderOf(*writer);
  const uint64_t size = writer->mapping()->size();
  EXPECT_EQ(reader.Covering(0, size + 1).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(reader.Covering(size, 1).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(reader.Covering(~uint64_t{0}, 2).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_TRUE(reader.Covering(0, size).ok());
}

TEST(PayloadRegionTest, AnEmptyRegionHasNothingToRead) {
  auto writer = PayloadRegion::Create("test");
  ASSERT_TRUE(writer.ok());
  PayloadRegion reader = ReaderOf(*writer);
  EXPECT_EQ(reader.Covering(0, 1).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(writer->data(), nullptr);
}

TEST(PayloadRegionTest, TheDescriptorIsCloseOnExec) {
  auto writer = PayloadRegion::Create("test");
  ASSERT_TRUE(writer.ok());
  EXPECT_TRUE(::fcntl(writer->fd(), F_GETFD) & FD_CLOEXEC);
}

}  // namespace
}  // namespace procpool::internal
