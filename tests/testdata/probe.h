// Tasks for tests that the math and faults plugins do not have. Test-only.

#ifndef PROCPOOL_TESTS_TESTDATA_PROBE_H_
#define PROCPOOL_TESTS_TESTDATA_PROBE_H_

#include <string>

#include "tasks/task.h"

namespace procpool::probe {

// x + y + z: a task with three arguments, for Map over three ranges.
int Add3(int x, int y, int z);

// Writes the worker's pid to the file `path` (atomically: a temporary file
// renamed into place), then never returns. Lets a test know that the task
// is running, and in which process.
int AnnounceAndHang(const std::string& path);

// Writes the worker's pid to `path` like AnnounceAndHang, sleeps `ms`
// milliseconds, then dies of SIGSEGV. While it sleeps, the pool may send the
// worker more calls that it will never read.
int AnnounceAndSegfaultAfterMs(const std::string& path, int ms);

inline constexpr TaskRef<int(int, int, int)> kAdd3{"add3"};
inline constexpr TaskRef<int(std::string)> kAnnounceAndHang{
    "announce_and_hang"};
inline constexpr TaskRef<int(std::string, int)> kAnnounceAndSegfaultAfterMs{
    "announce_and_segfault_after_ms"};

}  // namespace procpool::probe

#endif  // PROCPOOL_TESTS_TESTDATA_PROBE_H_
