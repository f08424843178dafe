// TuneProcessForThroughput() makes the two process-wide changes its
// contract names. A binary of its own, since they cannot be undone.

#include "pool/tuning.h"

#include <malloc.h>

#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace procpool {
namespace {

// See host_process_test.cc.
bool MallocMapsItsOwn(size_t bytes) {
  const size_t before = mallinfo2().hblks;
  char* volatile p = static_cast<char*>(std::malloc(bytes));
  p[0] = 1;
  const size_t during = mallinfo2().hblks;
  std::free(p);
  return during == before + 1;
}

// Also under a sanitizer, whose allocator has no glibc settings to refuse
// (poolrun calls it at start-up and reports a failure on stderr).
TEST(TuningTest, ReturnsOkAndMayBeCalledAgain) {
  EXPECT_TRUE(TuneProcessForThroughput().ok());
  EXPECT_TRUE(TuneProcessForThroughput().ok());
}

TEST(TuningTest, LargeAllocationsComeFromTheHeapAfterwards) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "a sanitizer replaces glibc's malloc";
#endif
  // glibc's default gives it a mapping (host_process_test.cc).
  ASSERT_TRUE(TuneProcessForThroughput().ok());
  EXPECT_FALSE(MallocMapsItsOwn(size_t{64} << 20));
}

TEST(TuningTest, AbseilsDeadlockDetectionIsOffAfterwards) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "under TSan, Abseil's Mutex is shimmed (third_party)";
#endif
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kAbort);
  ASSERT_TRUE(TuneProcessForThroughput().ok());
  // With detection on, taking two mutexes in both orders aborts the
  // process (host_process_test.cc); now it goes unremarked.
  absl::Mutex a, b;
  a.Lock();
  b.Lock();
  b.Unlock();
  a.Unlock();
  b.Lock();
  a.Lock();
  a.Unlock();
  b.Unlock();
  SUCCEED();
}

}  // namespace
}  // namespace procpool
