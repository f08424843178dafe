// Map, TryMap and MapUnordered: input order, laziness (a bounded read-ahead
// window, unbounded inputs), several ranges without zip, the strict option,
// failed items, and the C++20 range interface.

#include <atomic>
#include <cstddef>
#include <iterator>
#include <list>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "plugins/faults/faults.h"
#include "plugins/math/math.h"
#include "pool/pool.h"
#include "tests/testing/pool_fixture.h"

namespace procpool {
namespace {

using ::procpool::testing::kWait;
using ::procpool::testing::PoolTest;

using MapTest = PoolTest;

// The integers first, first + 1, ... (endless when limit < 0), read through
// an input iterator that counts how many elements were dereferenced, so a
// test can see how far Map read.
class CountingInts : public std::ranges::view_base {
 public:
  class iterator {
   public:
    using iterator_concept = std::input_iterator_tag;
    using value_type = int;
    using difference_type = std::ptrdiff_t;

    iterator() = default;
    iterator(int value, int limit, size_t* reads)
        : value_(value), limit_(limit), reads_(reads) {}

    int operator*() const {
      ++*reads_;
      return value_;
    }
    iterator& operator++() {
      ++value_;
      return *this;
    }
    void operator++(int) { ++value_; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) {
      return it.limit_ >= 0 && it.value_ >= it.limit_;
    }

   private:
    int value_ = 0;
    int limit_ = -1;
    size_t* reads_ = nullptr;
  };

  CountingInts(size_t* reads, int limit = -1) : reads_(reads), limit_(limit) {}
  iterator begin() const { return iterator(0, limit_, reads_); }
  std::default_sentinel_t end() const { return {}; }

 private:
  size_t* reads_;
  int limit_;
};
static_assert(std::ranges::input_range<CountingInts>);

// The integers 0, 1, 2, ... (endless), whose reading fails at item
// `fail_at` in one of the ways reading an input can fail: dereferencing it,
// incrementing past it, comparing it with the end, or converting it to the
// task's argument type. Each throws std::out_of_range("input <fail_at>").
enum class FailIn { kDereference, kIncrement, kComparison, kConversion };

[[noreturn]] void ThrowInputError(int i) {
  throw std::out_of_range(absl::StrCat("input ", i));
}

// Converts to int, or throws for the failing item.
struct Fragile {
  int value;
  bool fail;
  operator int() const {  // NOLINT: converted to the task's argument type
    if (fail) ThrowInputError(value);
    return value;
  }
};

class FailingInts : public std::ranges::view_base {
 public:
  class iterator {
   public:
    using iterator_concept = std::input_iterator_tag;
    using value_type = Fragile;
    using difference_type = std::ptrdiff_t;

    iterator() = default;
    iterator(int fail_at, FailIn how) : fail_at_(fail_at), how_(how) {}

    Fragile operator*() const {
      if (At(FailIn::kDereference)) ThrowInputError(value_);
      return Fragile{value_, At(FailIn::kConversion)};
    }
    iterator& operator++() {
      if (At(FailIn::kIncrement)) ThrowInputError(value_);
      ++value_;
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) {
      if (it.At(FailIn::kComparison)) ThrowInputError(it.value_);
      return false;
    }

   private:
    bool At(FailIn how) const { return how_ == how && value_ == fail_at_; }
    int value_ = 0;
    int fail_at_ = -1;
    FailIn how_ = FailIn::kDereference;
  };

  FailingInts(int fail_at, FailIn how) : fail_at_(fail_at), how_(how) {}
  iterator begin() const { return iterator(fail_at_, how_); }
  std::default_sentinel_t end() const { return {}; }

 private:
  int fail_at_;
  FailIn how_;
};
static_assert(std::ranges::input_range<FailingInts>);

// Argument tuples (i, i) over FailingInts.
auto FailingPairs(int fail_at) {
  return FailingInts(fail_at, FailIn::kDereference) |
         std::views::transform([](int i) { return std::make_tuple(i, i); });
}

// What a range-for over `range` yields before it throws, and the
// std::out_of_range it throws (its what(); empty if it ended instead).
template <class Range, class F>
std::string IterateUntilThrow(Range&& range, F on_item) {
  try {
    for (const auto& item : range) on_item(item);
  } catch (const std::out_of_range& e) {
    return e.what();
  }
  return "";
}

// ---- Order ----

TEST_F(MapTest, ResultsComeInInputOrder) {
  std::vector<int> xs, ys, want;
  for (int i = 0; i < 100; ++i) {
    xs.push_back(i);
    ys.push_back(1000 * i);
    want.push_back(1001 * i);
  }
  std::vector<int> got;
  for (int r : pool().Map(Task(math::kAdd), xs, ys)) got.push_back(r);
  EXPECT_EQ(got, want);
}

TEST_F(MapTest, ResultsComeInInputOrderWhenEarlierItemsAreSlower) {
  // Later items finish first; Map still yields them in input order.
  std::vector<int> sleeps = {240, 160, 80, 40, 20, 10, 5, 0};
  std::vector<int> got;
  for (int r : pool().Map(Task(faults::kSleepMs), sleeps)) got.push_back(r);
  EXPECT_EQ(got, sleeps);
}

TEST_F(MapTest, YieldsAnEarlyResultWhileALaterItemStillRuns) {
  // Item 1 never ends on its own; item 0 must be available anyway.
  std::vector<int> sleeps = {10, 600'000};
  auto results = pool().Map(Task(faults::kSleepMs), sleeps);
  auto it = results.begin();
  ASSERT_NE(it, results.end());
  EXPECT_EQ(*it, 10);
  // Abandoning the range here is fine; the pool stops the sleeper.
}

// ---- Laziness ----

TEST_F(MapTest, ReadsOnlyABoundedWindowAhead) {
  size_t reads = 0;
  CountingInts input(&reads);
  auto results = pool().Map(MapOptions{.window = 4}, Task(math::kNoop), input);
  auto it = results.begin();
  ASSERT_EQ(*it, 0);
  EXPECT_GE(reads, 1u);
  EXPECT_LE(reads, 4u + 2u) << "read far beyond the window of 4";
  for (int k = 1; k <= 20; ++k) {
    ++it;
    ASSERT_EQ(*it, k);
    EXPECT_LE(reads, static_cast<size_t>(k) + 4u + 2u) << "after item " << k;
  }
}

TEST_F(MapTest, ReadsOnlyABoundedWindowAheadWhenItemsOverflowChunks) {
  // 24 KiB items: every chunk passes max_chunk_bytes (64 KiB) and carries
  // its last item over to the next one, which must not read past the window.
  size_t reads = 0;
  CountingInts input(&reads, /*limit=*/2000);
  auto big = input | std::views::transform([](int i) {
               return std::string(24 << 10, static_cast<char>('a' + i % 26));
             });
  auto results = pool().Map(MapOptions{.window = 16, .chunksize = 4},
                            Task(math::kIdentity), big);
  auto it = results.begin();
  ASSERT_EQ((*it)[0], 'a');
  EXPECT_LE(reads, 16u + 8u) << "read far beyond the window of 16";
}

TEST_F(MapTest, AutomaticWindowIsBoundedToo) {
  size_t reads = 0;
  CountingInts input(&reads);
  auto results = pool().Map(Task(math::kNoop), input);
  auto it = results.begin();
  ASSERT_EQ(*it, 0);
  // However the window is chosen, an endless input is not read up front.
  EXPECT_LT(reads, 1'000'000u);
}

TEST_F(MapTest, EndlessIotaInputWorksWhenTheConsumerStops) {
  std::vector<int> got;
  for (int r : pool().Map(Task(math::kNoop), std::views::iota(0))) {
    got.push_back(r);
    if (got.size() == 200) break;
  }
  ASSERT_EQ(got.size(), 200u);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(got[i], i);
}

TEST_F(MapTest, AbandoningTheRangeCancelsWhatItQueued) {
  {
    // 64 items of 200 ms: about 6 s of work if they all ran on 2 workers.
    std::vector<int> sleeps(64, 200);
    auto results =
        pool().Map(MapOptions{.window = 64}, Task(faults::kSleepMs), sleeps);
    auto it = results.begin();
    ASSERT_EQ(*it, 200);
  }
  // Only what was already sent to a worker may still run before this.
  absl::Time start = absl::Now();
  EXPECT_EQ(pool().Submit(Task(math::kAdd), 1, 2).Get(kWait), 3);
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

// ---- Several ranges, no zip ----

TEST_F(MapTest, TwoRangesOfDifferentTypesAreReadInParallel) {
  std::vector<int> xs = {1, 2, 3};
  std::list<int> ys = {10, 20, 30};
  std::vector<int> got;
  for (int r : pool().Map(Task(math::kAdd), xs, ys)) got.push_back(r);
  EXPECT_EQ(got, (std::vector<int>{11, 22, 33}));
}

TEST_F(MapTest, TwoRangesOfDifferentLengthsStopAtTheShortest) {
  std::vector<int> xs = {1, 2, 3, 4, 5};
  std::vector<int> ys = {10, 20, 30};
  std::vector<int> got;
  for (int r : pool().Map(Task(math::kAdd), xs, ys)) got.push_back(r);
  EXPECT_EQ(got, (std::vector<int>{11, 22, 33}));
}

TEST_F(MapTest, ThreeRangesOfDifferentLengthsStopAtTheShortest) {
  std::vector<int> xs = {1, 2, 3, 4, 5};
  std::vector<int> ys = {10, 20, 30};
  std::vector<int> zs = {100, 200, 300, 400};
  std::vector<int> got;
  for (int r : pool().Map(Task(probe::kAdd3), xs, ys, zs)) got.push_back(r);
  EXPECT_EQ(got, (std::vector<int>{111, 222, 333}));
}

TEST_F(MapTest, AnEndlessRangeStopsAtTheFiniteOne) {
  std::vector<int> xs = {5, 6, 7};
  std::vector<int> got;
  for (int r : pool().Map(Task(math::kAdd), xs, std::views::iota(100))) {
    got.push_back(r);
  }
  EXPECT_EQ(got, (std::vector<int>{105, 107, 109}));
}

TEST_F(MapTest, EmptyInputYieldsNothing) {
  std::vector<int> none;
  int count = 0;
  for (int r : pool().Map(Task(math::kNoop), none)) {
    (void)r;
    ++count;
  }
  EXPECT_EQ(count, 0);
}

// ---- strict ----

TEST_F(MapTest, StrictMapThrowsInvalidArgumentAfterTheLastResult) {
  std::vector<int> xs = {1, 2, 3};
  std::vector<int> ys = {10, 20};
  std::vector<int> got;
  try {
    for (int r :
         pool().Map(MapOptions{.strict = true}, Task(math::kAdd), xs, ys)) {
      got.push_back(r);
    }
    FAIL() << "strict Map over unequal lengths ended without an error";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(got, (std::vector<int>{11, 22}));
}

TEST_F(MapTest, StrictMapOverThreeUnequalRangesThrowsInvalidArgument) {
  std::vector<int> xs = {1, 2, 3}, ys = {1, 2, 3}, zs = {1, 2, 3, 4};
  std::vector<int> got;
  try {
    for (int r : pool().Map(MapOptions{.strict = true}, Task(probe::kAdd3), xs,
                            ys, zs)) {
      got.push_back(r);
    }
    FAIL() << "strict Map over unequal lengths ended without an error";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(got, (std::vector<int>{3, 6, 9}));
}

TEST_F(MapTest, StrictMapOverEqualLengthsDoesNotThrow) {
  std::vector<int> xs = {1, 2}, ys = {3, 4};
  std::vector<int> got;
  for (int r :
       pool().Map(MapOptions{.strict = true}, Task(math::kAdd), xs, ys)) {
    got.push_back(r);
  }
  EXPECT_EQ(got, (std::vector<int>{4, 6}));
}

TEST_F(MapTest, StrictTryMapYieldsTheLengthErrorAsItsLastElement) {
  std::vector<int> xs = {1, 2, 3};
  std::vector<int> ys = {10, 20};
  std::vector<absl::StatusOr<int>> got;
  for (const absl::StatusOr<int>& r :
       pool().TryMap(MapOptions{.strict = true}, Task(math::kAdd), xs, ys)) {
    got.push_back(r);
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].value_or(-1), 11);
  EXPECT_EQ(got[1].value_or(-1), 22);
  EXPECT_EQ(got[2].status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- Failed items ----

TEST_F(MapTest, DereferencingAFailedItemThrowsItsTaskError) {
  std::vector<int> xs = {1, -1, 2};
  std::vector<int> got;
  std::vector<absl::StatusCode> errors;
  auto results = pool().Map(Task(faults::kCheckNonNegative), xs);
  for (auto it = results.begin(); it != results.end(); ++it) {
    try {
      got.push_back(*it);
    } catch (const TaskError& e) {
      errors.push_back(e.code());
      EXPECT_EQ(e.exception_type(), "std::invalid_argument");
    }
  }
  EXPECT_EQ(got, (std::vector<int>{1, 2}));
  EXPECT_EQ(errors,
            (std::vector<absl::StatusCode>{absl::StatusCode::kUnknown}));
}

TEST_F(MapTest, TryMapContinuesPastFailingItems) {
  std::vector<int> xs = {1, -1, 2};
  std::vector<absl::StatusOr<int>> got;
  for (const absl::StatusOr<int>& r :
       pool().TryMap(Task(faults::kCheckNonNegative), xs)) {
    got.push_back(r);
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].value_or(-100), 1);
  EXPECT_EQ(got[1].status().code(), absl::StatusCode::kUnknown);
  EXPECT_EQ(got[2].value_or(-100), 2);
}

TEST_F(MapTest, TryMapGoesOnPastAWorkerCrash) {
  std::vector<int> xs = {0, 1, 2, 3, 4, 5};
  std::vector<int> crash_on(xs.size(), 3);
  std::vector<absl::StatusCode> codes;
  for (const absl::StatusOr<int>& r :
       pool().TryMap(Task(faults::kCrashOn), xs, crash_on)) {
    codes.push_back(r.status().code());
  }
  using C = absl::StatusCode;
  EXPECT_EQ(codes, (std::vector<C>{C::kOk, C::kOk, C::kOk, C::kAborted, C::kOk,
                                   C::kOk}));
}

// ---- Chunks ----
// Maps of many items send them to workers in chunks; every item still has
// its own outcome.

TEST_F(MapTest, ACrashInsideAChunkFailsOnlyThatItem) {
  constexpr int kN = 20000;
  std::vector<int> crash_on(kN, 12345);
  MapOptions opts;
  opts.chunksize = 5000;  // the crashing item sits in the middle of a chunk
  int i = 0;
  for (const absl::StatusOr<int>& r :
       pool().TryMap(opts, Task(faults::kCrashOn), std::views::iota(0, kN), crash_on)) {
    if (i == 12345) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted);
      EXPECT_NE(r.status().message().find("(input #12345)"), std::string::npos)
          << r.status();
      EXPECT_NE(r.status().message().find("SIGSEGV"), std::string::npos) << r.status();
    } else {
      ASSERT_TRUE(r.ok()) << "#" << i << ": " << r.status();
      EXPECT_EQ(*r, i);
    }
    ++i;
  }
  EXPECT_EQ(i, kN);
}

TEST_F(MapTest, AutomaticChunksKeepEveryItemsOwnException) {
  // check_non_negative throws for negative inputs: every 1000th here.
  constexpr int kN = 50000;
  std::vector<int> xs(kN);
  for (int k = 0; k < kN; ++k) xs[k] = k % 1000 == 999 ? -k : k;
  int failed = 0, i = 0;
  for (const absl::StatusOr<int>& r : pool().TryMap(Task(faults::kCheckNonNegative), xs)) {
    if (xs[i] < 0) {
      ++failed;
      EXPECT_EQ(r.status().code(), absl::StatusCode::kUnknown);
      EXPECT_NE(r.status().message().find(absl::StrCat("(input #", i, ")")),
                std::string::npos)
          << r.status();
    } else {
      ASSERT_TRUE(r.ok()) << "#" << i << ": " << r.status();
      EXPECT_EQ(*r, xs[i]);
    }
    ++i;
  }
  EXPECT_EQ(i, kN);
  EXPECT_EQ(failed, kN / 1000);
}

TEST_F(MapTest, WorkersRetiringInsideChunksLoseNoItem) {
  // A worker that reaches max_tasks_per_child mid-chunk answers what it ran;
  // the pool sends the rest to the next worker.
  PoolOptions options = testing::TestPoolOptions();
  options.max_tasks_per_child = 777;
  StartPool(options);
  constexpr int kN = 10000;
  MapOptions opts;
  opts.chunksize = 1000;
  int i = 0;
  for (int r : pool().Map(opts, Task(math::kAdd), std::views::iota(0, kN),
                          std::views::iota(0, kN))) {
    ASSERT_EQ(r, 2 * i);
    ++i;
  }
  EXPECT_EQ(i, kN);
  int restarts = 0;
  for (const WorkerStats& w : pool().Stats().workers) restarts += w.restarts;
  EXPECT_GE(restarts, 10);
}

// ---- MapUnordered ----

TEST_F(MapTest, MapUnorderedYieldsEveryIndexOnceWithItsArguments) {
  std::vector<int> xs, ys;
  for (int i = 0; i < 40; ++i) {
    xs.push_back(i);
    ys.push_back(7 * i);
  }
  std::set<size_t> seen;
  for (const auto& item : pool().MapUnordered(Task(math::kAdd), xs, ys)) {
    ASSERT_LT(item.index, xs.size());
    EXPECT_TRUE(seen.insert(item.index).second)
        << "index " << item.index << " twice";
    EXPECT_EQ(item.args, std::make_tuple(xs[item.index], ys[item.index]));
    ASSERT_TRUE(item.result.ok()) << item.result.status();
    EXPECT_EQ(*item.result, xs[item.index] + ys[item.index]);
  }
  EXPECT_EQ(seen.size(), xs.size());
}

TEST_F(MapTest, MapUnorderedReportsAFailedItemWithItsArguments) {
  std::vector<int> xs = {3, -4, 5};
  bool saw_failure = false;
  size_t count = 0;
  for (const auto& item :
       pool().MapUnordered(Task(faults::kCheckNonNegative), xs)) {
    ++count;
    if (item.index == 1) {
      saw_failure = true;
      EXPECT_EQ(std::get<0>(item.args), -4);
      EXPECT_EQ(item.result.status().code(), absl::StatusCode::kUnknown);
    } else {
      EXPECT_TRUE(item.result.ok()) << item.result.status();
    }
  }
  EXPECT_EQ(count, 3u);
  EXPECT_TRUE(saw_failure);
}

// ---- An input that throws ----
// Like Python's map over a generator that raises: the items before the
// failing input are yielded, then its exception comes out.

TEST_F(MapTest, MapYieldsTheItemsBeforeAFailingInputThenRethrowsItsException) {
  std::vector<int> got;
  std::string error = IterateUntilThrow(
      pool().Map(Task(math::kNoop), FailingInts(5, FailIn::kDereference)),
      [&](int r) { got.push_back(r); });
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(error, "input 5");
}

TEST_F(MapTest, MapRethrowsAnInputsExceptionBeyondManyChunks) {
  std::vector<int> got;
  std::string error = IterateUntilThrow(
      pool().Map(MapOptions{.chunksize = 64}, Task(math::kNoop),
                 FailingInts(1000, FailIn::kDereference)),
      [&](int r) { got.push_back(r); });
  ASSERT_EQ(got.size(), 1000u);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(got[i], i);
  EXPECT_EQ(error, "input 1000");
}

TEST_F(MapTest, MapRethrowsAnExceptionFromTheFirstInputWhenIterationStarts) {
  auto results =
      pool().Map(Task(math::kNoop), FailingInts(0, FailIn::kDereference));
  EXPECT_THROW(results.begin(), std::out_of_range);
}

TEST_F(MapTest, MapRethrowsAnExceptionFromIncrementingAnInput) {
  std::vector<int> got;
  std::string error = IterateUntilThrow(
      pool().Map(Task(math::kNoop), FailingInts(3, FailIn::kIncrement)),
      [&](int r) { got.push_back(r); });
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(error, "input 3");
}

TEST_F(MapTest, MapRethrowsAnExceptionFromComparingAnInputWithItsEnd) {
  std::vector<int> got;
  std::string error = IterateUntilThrow(
      pool().Map(Task(math::kNoop), FailingInts(3, FailIn::kComparison)),
      [&](int r) { got.push_back(r); });
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(error, "input 3");
}

TEST_F(MapTest, MapRethrowsAnExceptionFromConvertingAnInputToTheArgumentType) {
  std::vector<int> got;
  std::vector<int> ys(10, 100);
  std::string error = IterateUntilThrow(
      pool().Map(Task(math::kAdd), FailingInts(3, FailIn::kConversion), ys),
      [&](int r) { got.push_back(r); });
  EXPECT_EQ(got, (std::vector<int>{100, 101, 102}));
  EXPECT_EQ(error, "input 3");
}

TEST_F(MapTest, TryMapYieldsTheItemsBeforeAFailingInputThenRethrowsItsException) {
  std::vector<int> got;
  std::string error = IterateUntilThrow(
      pool().TryMap(Task(math::kNoop), FailingInts(4, FailIn::kDereference)),
      [&](const absl::StatusOr<int>& r) { got.push_back(r.value_or(-1)); });
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(error, "input 4");
}

TEST_F(MapTest, MapUnorderedYieldsTheItemsBeforeAFailingInputThenRethrowsItsException) {
  std::set<size_t> seen;
  std::string error = IterateUntilThrow(
      pool().MapUnordered(Task(math::kNoop), FailingInts(6, FailIn::kDereference)),
      [&](const auto& item) {
        EXPECT_EQ(item.result.value_or(-1), static_cast<int>(item.index));
        seen.insert(item.index);
      });
  EXPECT_EQ(seen, (std::set<size_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(error, "input 6");
}

TEST_F(MapTest, IstarmapYieldsTheItemsBeforeAFailingInputThenRethrowsItsException) {
  std::vector<int> got;
  std::string error =
      IterateUntilThrow(pool().Istarmap(Task(math::kAdd), FailingPairs(3)),
                        [&](int r) { got.push_back(r); });
  EXPECT_EQ(got, (std::vector<int>{0, 2, 4}));
  EXPECT_EQ(error, "input 3");
}

TEST_F(MapTest, TryIstarmapYieldsTheItemsBeforeAFailingInputThenRethrowsItsException) {
  std::vector<int> got;
  std::string error = IterateUntilThrow(
      pool().TryIstarmap(Task(math::kAdd), FailingPairs(3)),
      [&](const absl::StatusOr<int>& r) { got.push_back(r.value_or(-1)); });
  EXPECT_EQ(got, (std::vector<int>{0, 2, 4}));
  EXPECT_EQ(error, "input 3");
}

TEST_F(MapTest, MapAllReturnsUnknownForAFailingInput) {
  absl::StatusOr<std::vector<int>> r =
      pool().MapAll(Task(math::kNoop), FailingInts(7, FailIn::kDereference));
  ASSERT_EQ(r.status().code(), absl::StatusCode::kUnknown) << r.status();
  TaskError e(r.status());
  EXPECT_EQ(e.exception_type(), "std::out_of_range");
  EXPECT_EQ(e.exception_what(), "input 7");
}

TEST_F(MapTest, StarmapReturnsUnknownForAFailingInput) {
  absl::StatusOr<std::vector<int>> r =
      pool().Starmap(Task(math::kAdd), FailingPairs(2));
  ASSERT_EQ(r.status().code(), absl::StatusCode::kUnknown) << r.status();
  TaskError e(r.status());
  EXPECT_EQ(e.exception_type(), "std::out_of_range");
  EXPECT_EQ(e.exception_what(), "input 2");
}

// ---- The range interface ----

TEST_F(MapTest, MapResultIsAnInputRange) {
  std::vector<int> xs = {1, 2, 3};
  auto results = pool().Map(Task(math::kNoop), xs);
  static_assert(std::ranges::input_range<decltype(results)>);
  static_assert(std::ranges::view<decltype(results)>);
  int sum = 0;
  for (int r : results) sum += r;
  EXPECT_EQ(sum, 6);
}

TEST_F(MapTest, MapComposesWithStdViews) {
  std::vector<int> got;
  for (int r : pool().Map(Task(math::kNoop), std::views::iota(0)) |
                   std::views::transform([](int x) { return x * x; }) |
                   std::views::take(5)) {
    got.push_back(r);
  }
  EXPECT_EQ(got, (std::vector<int>{0, 1, 4, 9, 16}));
}

TEST_F(MapTest, MapOfStringsYieldsReferencesToTheResults) {
  std::vector<std::string> words = {"a", "bb", "ccc"};
  std::vector<std::string> got;
  for (const std::string& w : pool().Map(Task(math::kIdentity), words))
    got.push_back(w);
  EXPECT_EQ(got, words);
}

}  // namespace
}  // namespace procpool
