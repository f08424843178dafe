// A pool leaves its host process's settings alone: glibc's malloc and
// Abseil's Mutex deadlock detection stay as the program set them, unless
// it calls TuneProcessForThroughput() (pool/tuning.h) itself.
//
// A binary of its own: nothing else in this process may tune it.

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "plugins/faults/faults.h"
#include "pool/pool.h"
#include "tests/testing/pool_fixture.h"

namespace procpool {
namespace {

using ::procpool::testing::PoolTest;

// Resident memory of this process, from /proc/self/statm.
uint64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size_pages = 0, resident_pages = 0;
  statm >> size_pages >> resident_pages;
  return resident_pages * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

// Whether glibc serves an allocation of `bytes` with a mapping of its own
// (which free() gives back to the kernel at once): by default it does
// above 32 MiB whatever else happened; with M_MMAP_MAX at 0 it never does.
bool MallocMapsItsOwn(size_t bytes) {
  const size_t before = mallinfo2().hblks;
  char* volatile p = static_cast<char*>(std::malloc(bytes));
  p[0] = 1;
  const size_t during = mallinfo2().hblks;
  std::free(p);
  return during == before + 1;
}

// The pool of the fixture is created after Abseil's deadlock detection is
// set to abort, so that the tests see what Create() does to it.
class HostProcessTest : public PoolTest {
 protected:
  void SetUp() override {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kAbort);
    PoolTest::SetUp();
  }
};

TEST_F(HostProcessTest, CreateLeavesMallocsLargeAllocationsOnTheirOwnMappings) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "a sanitizer replaces glibc's malloc";
#endif
  EXPECT_TRUE(MallocMapsItsOwn(size_t{64} << 20));
}

// Two mutexes taken in both orders: a potential deadlock.
void LockInBothOrders() {
  absl::Mutex a, b;
  a.Lock();
  b.Lock();
  b.Unlock();
  a.Unlock();
  b.Lock();
  a.Lock();
  a.Unlock();
  b.Unlock();
}

TEST_F(HostProcessTest, CreateLeavesAbseilsDeadlockDetectionOn) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "under TSan, Abseil's Mutex is shimmed (third_party)";
#endif
  // The child process reruns this test from the start: SetUp, then this.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(LockInBothOrders(), "Potential Mutex deadlock");
}

TEST_F(HostProcessTest, AMapOfLargeResultsDoesNotGrowTheCallersMemoryMuch) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "a sanitizer's allocator keeps freed memory on purpose";
#endif
  // 2,000 results of 1 MiB each, consumed one by one and dropped.
  constexpr int kItems = 2000;
  constexpr int64_t kBytes = int64_t{1} << 20;
  const uint64_t before = ResidentBytes();
  uint64_t peak = before;
  int items = 0;
  for (const std::string& r :
       pool().Map(Task(faults::kHuge), std::vector<int64_t>(kItems, kBytes))) {
    ASSERT_EQ(r.size(), static_cast<size_t>(kBytes));
    peak = std::max(peak, ResidentBytes());
    ++items;
  }
  peak = std::max(peak, ResidentBytes());
  EXPECT_EQ(items, kItems);
  EXPECT_LT(peak - before, uint64_t{128} << 20)
      << "grew by " << ((peak - before) >> 20) << " MiB";
}

}  // namespace
}  // namespace procpool
