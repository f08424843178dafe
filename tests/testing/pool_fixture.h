// Test helpers for procpool: where the plugins are, a fixture that owns a
// pool, bounded waits, and a watchdog.
//
// Every wait in the tests has a bound. Waits the library offers no timeout
// for (iterating a Map, Shutdown(wait=true), a pool's destructor) are bounded
// by the Watchdog every PoolTest holds: if a test is still running when it
// fires, it prints which test hung and ends the process, so a hang fails the
// test binary instead of stalling CI until Bazel's timeout.

#ifndef PROCPOOL_TESTS_TESTING_POOL_FIXTURE_H_
#define PROCPOOL_TESTS_TESTING_POOL_FIXTURE_H_

#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "plugins/faults/faults.h"
#include "plugins/math/math.h"
#include "pool/pool.h"
#include "pool/runfiles.h"
#include "tests/testdata/probe.h"

namespace procpool::testing {

// How long a test waits for something that should happen "soon" (a task
// of a few milliseconds, a replacement worker). Generous: reaching it means
// the behaviour is broken, not slow.
inline constexpr absl::Duration kWait = absl::Seconds(20);

// Absolute paths of the plugins in this test's runfiles. Throws
// std::runtime_error if a plugin is missing (a BUILD mistake).
std::string MathPlugin();
std::string FaultsPlugin();
std::string ProbePlugin();
std::string Runfile(std::string_view workspace_path);

// A path in $TEST_TMPDIR that no other call in this process returns.
std::string TempPath(std::string_view name);

// Ends the process with a message naming the running test if it is still
// alive `budget` after construction. Disarmed by its destructor.
class Watchdog {
 public:
  explicit Watchdog(absl::Duration budget);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  absl::Notification done_;
  std::thread thread_;
};

// Polls `condition` every few milliseconds until it holds (true) or
// `timeout` passes (false). Polling a condition, never sleeping blindly.
bool WaitUntil(const std::function<bool()>& condition,
               absl::Duration timeout = kWait);

// The child processes of this process, read from /proc.
struct ChildProcessInfo {
  int pid;
  char state;  // 'R', 'S', 'Z', ... as in /proc/<pid>/stat
};
std::vector<ChildProcessInfo> ChildProcesses();

// Waits until the file written by probe::AnnounceAndHang exists and returns
// the pid in it; std::nullopt after `timeout`.
std::optional<int> WaitForAnnouncedPid(const std::string& path,
                                       absl::Duration timeout = kWait);

// The task `ref` of `pool`; throws std::runtime_error (failing the test
// that asked) when the pool does not have it.
template <class Sig>
TaskHandle<Sig> MustTask(const ProcessPool& pool, TaskRef<Sig> ref) {
  absl::StatusOr<TaskHandle<Sig>> task = pool.Task(ref);
  if (!task.ok()) throw std::runtime_error(task.status().ToString());
  return *task;
}

// The outcome of `f` if it resolves within `timeout`, else kDeadlineExceeded.
template <class R>
absl::Status StatusWithin(const Future<R>& f, absl::Duration timeout = kWait) {
  return f.Result(timeout).status();
}

// Options for a pool of `workers` workers loading the math, faults and
// probe plugins.
PoolOptions TestPoolOptions(int workers = 2);

// A fixture owning a pool (2 workers, math + faults + probe plugins) and a
// watchdog that outlives it. A test ends by terminating its pool, so that
// the tasks it left hanging do not hold the suite; DestroyPool() drains it,
// as the pool's destructor does.
class PoolTest : public ::testing::Test {
 protected:
  void SetUp() override { StartPool(TestPoolOptions()); }
  void TearDown() override { TerminatePool(); }

  // Replaces the pool (terminating the old one) with one made from
  // `options`; fails the test (fatal) if it cannot be created.
  void StartPool(PoolOptions options);

  // The pool StartPool made. Throws (which gtest reports as this test's
  // failure) when there is none, e.g. after StartPool failed: a test that
  // goes on after a failed start then stops instead of using a dead pool.
  ProcessPool& pool() {
    if (!pool_.has_value()) throw std::logic_error("the test's pool did not start");
    return *pool_;
  }
  // Destroys the pool now, draining it (its futures stay valid).
  void DestroyPool() { pool_.reset(); }
  // Terminates and destroys the pool now.
  void TerminatePool() {
    if (pool_.has_value()) pool_->Terminate();
    pool_.reset();
  }

  template <class Sig>
  TaskHandle<Sig> Task(TaskRef<Sig> ref) {
    return MustTask(*pool_, ref);
  }

  // Declared first so that it is destroyed last: it also bounds the pool's
  // destructor.
  Watchdog watchdog_{absl::Seconds(90)};
  std::optional<ProcessPool> pool_;
};

}  // namespace procpool::testing

#endif  // PROCPOOL_TESTS_TESTING_POOL_FIXTURE_H_
