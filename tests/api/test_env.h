// Shared setup for the API tests: plugin paths and pool construction.

#ifndef PROCPOOL_TESTS_API_TEST_ENV_H_
#define PROCPOOL_TESTS_API_TEST_ENV_H_

#include <string>

#include "gtest/gtest.h"
#include "pool/pool.h"
#include "pool/runfiles.h"

namespace procpool::testing {

inline std::string Plugin(const char* name) {
  absl::StatusOr<std::string> p =
      FindRunfile(std::string("plugins/") + name + "/lib" + name + ".so");
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : std::string();
}

inline PoolOptions Options(int workers = 2) {
  PoolOptions opts;
  opts.max_workers = workers;
  opts.plugins = {Plugin("math"), Plugin("faults")};
  return opts;
}

// Creates a pool or fails the test.
inline ProcessPool MakePool(PoolOptions opts) {
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(std::move(opts));
  if (!pool.ok()) {
    ADD_FAILURE() << pool.status();
    std::abort();
  }
  return *std::move(pool);
}

template <class Sig>
TaskHandle<Sig> Checked(const ProcessPool& pool, TaskRef<Sig> ref) {
  absl::StatusOr<TaskHandle<Sig>> t = pool.Task(ref);
  if (!t.ok()) {
    ADD_FAILURE() << t.status();
    std::abort();
  }
  return *t;
}

// Polls `cond` every millisecond for at most `limit`.
template <class Cond>
bool Eventually(Cond cond, absl::Duration limit = absl::Seconds(10)) {
  absl::Time end = absl::Now() + limit;
  while (absl::Now() < end) {
    if (cond()) return true;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return cond();
}

}  // namespace procpool::testing

#endif  // PROCPOOL_TESTS_API_TEST_ENV_H_
