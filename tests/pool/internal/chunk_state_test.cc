// ChunkState keeps one outcome per item through partial answers, crashes
// and chunk-level failures, and rebuilds its arguments with exactly the
// items still unanswered.
#include "pool/internal/chunk_state.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "pool/internal/wire.h"
#include "tasks/serialize.h"

namespace procpool::internal {
namespace {

using internal::AppendArchive;
using internal::DecodeArchive;

// A chunk of items x = first..first+n-1 (one int argument each).
std::shared_ptr<ChunkState> MakeChunk(int n, size_t first_index = 100) {
  auto c = std::make_shared<ChunkState>(7, first_index, "square");
  for (int i = 0; i < n; ++i) c->AddItem(i);
  return c;
}

// The arguments (ints) the chunk would send now.
std::vector<int> SentArgs(ChunkState& c) {
  std::vector<int> out;
  auto items = SplitChunkItems(c.args());
  EXPECT_TRUE(items.ok()) << items.status();
  for (std::string_view item : *items) out.push_back(DecodeArchive<int>(item));
  return out;
}

// What a worker answers for `args`: x*x, except kException for negatives.
std::string Answer(const std::vector<int>& args) {
  std::string out;
  const size_t result = BeginChunkResult(&out);
  for (int x : args) {
    const size_t answer = BeginChunkAnswer(&out);
    uint8_t code = static_cast<uint8_t>(ResultCode::kOk);
    if (x == 3) {
      code = static_cast<uint8_t>(ResultCode::kException);
      AppendArchive(&out, std::string("std::domain_error"), std::string("three"));
    } else {
      AppendArchive(&out, x * x);
    }
    EndChunkAnswer(&out, answer, code);
  }
  EndChunkResult(&out, result, static_cast<uint32_t>(args.size()));
  return out;
}

TEST(ChunkStateTest, TaskCarriesTheChunkBit) {
  auto c = MakeChunk(3);
  EXPECT_EQ(c->task(), 7u | kChunkBit);
  EXPECT_EQ(c->plugin_task(), 7u);
  EXPECT_EQ(c->size(), 3u);
  EXPECT_EQ(c->AsChunk(), c.get());
  EXPECT_EQ(SentArgs(*c), (std::vector<int>{0, 1, 2}));
}

TEST(ChunkStateTest, WholeAnswerGivesEveryItemItsOutcome) {
  auto c = MakeChunk(5);
  size_t answered = 0;
  absl::StatusOr<bool> all = c->Accept(Answer({0, 1, 2, 3, 4}), &answered);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_TRUE(*all);
  EXPECT_EQ(answered, 5u);
  c->Complete(absl::OkStatus());
  EXPECT_EQ(DecodeArchive<int>(c->ItemBytes(4)), 16);
  absl::Status s = c->ItemStatus(3);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnknown);
  EXPECT_NE(s.message().find("task 'square' (input #103) raised std::domain_error: three"),
            std::string::npos)
      << s;
  EXPECT_EQ(c->failed_items(), 1u);
}

TEST(ChunkStateTest, PartialAnswerLeavesTheRestToSendAgain) {
  auto c = MakeChunk(6);
  size_t answered = 0;
  absl::StatusOr<bool> all = c->Accept(Answer({0, 1}), &answered);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_FALSE(*all);
  EXPECT_EQ(answered, 2u);
  EXPECT_EQ(c->unanswered(), 4u);
  EXPECT_EQ(c->UnansweredIndex(0), 102u);
  EXPECT_EQ(SentArgs(*c), (std::vector<int>{2, 3, 4, 5}));
  all = c->Accept(Answer({2, 3, 4, 5}), &answered);
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(*all);
  c->Complete(absl::OkStatus());
  for (int i : {0, 1, 2, 4, 5}) EXPECT_EQ(DecodeArchive<int>(c->ItemBytes(i)), i * i);
}

TEST(ChunkStateTest, CrashFailsOnlyTheRunningItem) {
  auto c = MakeChunk(5);
  // The worker died running the third item (x = 2).
  EXPECT_FALSE(c->FailRunning(2, absl::AbortedError("killed while running x=2")));
  EXPECT_EQ(SentArgs(*c), (std::vector<int>{0, 1, 3, 4}));
  EXPECT_EQ(c->UnansweredIndex(2), 103u);
  // Then the first of those left (x = 0).
  EXPECT_FALSE(c->FailRunning(0, absl::AbortedError("killed while running x=0")));
  EXPECT_EQ(SentArgs(*c), (std::vector<int>{1, 3, 4}));
  size_t answered = 0;
  absl::StatusOr<bool> all = c->Accept(Answer({1, 3, 4}), &answered);
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(*all);
  c->Complete(absl::OkStatus());
  EXPECT_EQ(c->ItemStatus(2).message(), "killed while running x=2");
  EXPECT_EQ(c->ItemStatus(0).message(), "killed while running x=0");
  EXPECT_EQ(DecodeArchive<int>(c->ItemBytes(1)), 1);
  EXPECT_EQ(DecodeArchive<int>(c->ItemBytes(4)), 16);
  EXPECT_EQ(c->failed_items(), 3u);  // two crashes and the exception
}

TEST(ChunkStateTest, LastItemCrashingCompletesTheChunk) {
  auto c = MakeChunk(1);
  EXPECT_TRUE(c->FailRunning(0, absl::AbortedError("gone")));
}

TEST(ChunkStateTest, ChunkFailureReachesItemsWithoutAnOutcome) {
  auto c = MakeChunk(4);
  size_t answered = 0;
  ASSERT_TRUE(c->Accept(Answer({0}), &answered).ok());
  c->Cancel(absl::CancelledError("not cancellable once dispatched"));  // no-op
  c->Complete(absl::CancelledError("pool destroyed"));
  EXPECT_TRUE(c->ItemStatus(0).ok());
  EXPECT_EQ(c->ItemStatus(1).code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(c->failed_items(), 3u);
}

TEST(ChunkStateTest, MalformedAnswersAreRejected) {
  auto c = MakeChunk(2);
  size_t answered = 0;
  EXPECT_EQ(c->Accept(std::string(), &answered).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(c->Accept(Answer({0, 1, 2}), &answered).status().code(),
            absl::StatusCode::kDataLoss);  // more answers than items
  std::string cut = Answer({0, 1});
  cut.pop_back();
  EXPECT_EQ(c->Accept(cut, &answered).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(c->unanswered(), 2u);
}

TEST(ChunkStateTest, TakeLastItemMovesItsArchive) {
  auto c = MakeChunk(3);
  std::string last = c->TakeLastItem();
  EXPECT_EQ(c->size(), 2u);
  EXPECT_EQ(SentArgs(*c), (std::vector<int>{0, 1}));
  auto d = std::make_shared<ChunkState>(7, 102, "square");
  d->AddEncodedItem(last);
  EXPECT_EQ(SentArgs(*d), (std::vector<int>{2}));
}

}  // namespace
}  // namespace procpool::internal
