// How a map with automatic chunks sizes them: about Scheduler::kMapChunkNs
// of work each (MapChunkFor, MapWindowFor), smaller at the start and near
// the end of an input of known length (MapChunkSize).

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "pool/internal/map_range.h"
#include "pool/internal/scheduler.h"

namespace procpool::internal {
namespace {

// The chunks a map of `total` items (0: unknown, then `stop_after` are
// read) would make with full size `full` over `workers`.
std::vector<size_t> Chunks(size_t full, uint64_t total, size_t workers,
                           uint64_t stop_after = 0) {
  std::vector<size_t> out;
  uint64_t read = 0;
  const uint64_t end = total > 0 ? total : stop_after;
  while (read < end) {
    size_t c = MapChunkSize(full, read, total, workers);
    if (read + c > end) c = static_cast<size_t>(end - read);
    out.push_back(c);
    read += c;
  }
  return out;
}

TEST(MapChunksTest, AChunkIsAboutTenMillisecondsOfWork) {
  EXPECT_EQ(Scheduler::MapChunkFor(0, 0), 1u);  // nothing measured yet
  EXPECT_EQ(Scheduler::MapChunkFor(100'000, 8), 100u);
  EXPECT_EQ(Scheduler::MapChunkFor(10'000, 8), 1'000u);
  EXPECT_EQ(Scheduler::MapChunkFor(5'000'000, 8), 2u);
  EXPECT_EQ(Scheduler::MapChunkFor(20'000'000, 8), 1u);
  EXPECT_EQ(Scheduler::MapChunkFor(1, 8), 4'096u);  // the cap
  // Two full chunks per worker and one more item read ahead.
  EXPECT_EQ(Scheduler::MapWindowFor(100'000, 8, 0, 2), 2u * (2 * 100 + 1));
  EXPECT_EQ(Scheduler::MapWindowFor(0, 0, 0, 2), 2u * (2 * 1 + 1));
  EXPECT_EQ(Scheduler::MapWindowFor(1, 8, 0, 8), 4u * 4'096);
}

TEST(MapChunksTest, GivenChunksAreReadAheadByTheCallsAWorkerQueues) {
  // 1 ms of calls per batch, two batches per worker: the window of a map
  // of one-item chunks does not grow with the automatic chunks' size.
  EXPECT_EQ(Scheduler::MapWindowFor(10'000, 8, 1, 2), 2u * (2 * 100 + 1));
  EXPECT_EQ(Scheduler::MapWindowFor(10'000, 8, 500, 2), 2u * 2 * 500);
  EXPECT_EQ(Scheduler::MapWindowFor(0, 0, 1, 2), 2u * (2 * 1 + 1));
}

TEST(MapChunksTest, AChunkHoldsAboutFourMebibytesOfResultsAtMost) {
  // 10 us items of 64 KiB results: 64 of them, not 1,000.
  EXPECT_EQ(Scheduler::MapChunkFor(10'000, 64 << 10), 64u);
  EXPECT_EQ(Scheduler::MapChunkFor(10'000, 1 << 20), 4u);
  EXPECT_EQ(Scheduler::MapChunkFor(10'000, 64 << 20), 1u);
  EXPECT_EQ(Scheduler::MapWindowFor(10'000, 1 << 20, 0, 2), 2u * (2 * 4 + 1));
}

TEST(MapChunksTest, ChunksStartAtAnEighthAndGrowToTheFullSize) {
  const std::vector<size_t> c = Chunks(1'000, 0, 2, 20'000);
  ASSERT_GE(c.size(), 3u);
  EXPECT_EQ(c[0], 125u);
  EXPECT_EQ(c[1], 125u);
  size_t previous = 0;
  size_t first_full = c.size();
  for (size_t i = 0; i + 1 < c.size(); ++i) {  // the last one is cut short
    EXPECT_GE(c[i], previous) << "chunk " << i << " of an input of unknown length";
    previous = c[i];
    if (c[i] == 1'000 && first_full == c.size()) first_full = i;
  }
  // Each chunk a worker's share of what was read before it: the full size
  // comes within ten chunks.
  EXPECT_LE(first_full, 10u);
}

TEST(MapChunksTest, ChunksShrinkNearTheEndOfAKnownInput) {
  const uint64_t total = 20'000;
  const std::vector<size_t> c = Chunks(1'000, total, 2);
  uint64_t read = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    const uint64_t left = total - read;
    // Never more than half a worker's share of what is left.
    EXPECT_LE(c[i], std::max<uint64_t>(1, left / 4)) << "chunk " << i;
    read += c[i];
  }
  EXPECT_EQ(read, total);
  EXPECT_EQ(c.back(), 1u);
  // Shrinking costs a few dozen more chunks, not one per item.
  EXPECT_LE(c.size(), 20'000u / 1'000 + 40);
}

TEST(MapChunksTest, ATinyInputStillGoesOutOneItemAtLeast) {
  EXPECT_EQ(MapChunkSize(1'000, 0, 3, 2), 1u);
  EXPECT_EQ(MapChunkSize(1'000, 3, 3, 2), 1u);  // read past the end: never 0
  EXPECT_EQ(MapChunkSize(0, 0, 0, 0), 1u);
  EXPECT_EQ(MapChunkSize(1, 100, 0, 1), 1u);
  const std::vector<size_t> c = Chunks(1'000, 7, 2);
  EXPECT_EQ(c, std::vector<size_t>(7, 1));
}

}  // namespace
}  // namespace procpool::internal
