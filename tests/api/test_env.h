// Shorthands for the API and reliability suites, on top of the shared test
// support in tests/testing/pool_fixture.h (plugin paths, bounded waits).

#ifndef PROCPOOL_TESTS_API_TEST_ENV_H_
#define PROCPOOL_TESTS_API_TEST_ENV_H_

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"
#include "pool/pool.h"
#include "pool/runfiles.h"
#include "tests/testing/pool_fixture.h"

namespace procpool::testing {

// plugins/<name>/lib<name>.so in the runfiles.
inline std::string Plugin(const std::string& name) {
  return Runfile("plugins/" + name + "/lib" + name + ".so");
}

// `workers` workers with the math and faults plugins.
inline PoolOptions Options(int workers = 2) {
  PoolOptions opts;
  opts.max_workers = workers;
  opts.plugins = {MathPlugin(), FaultsPlugin()};
  opts.start_timeout = kWait;
  return opts;
}

// Creates a pool or ends the test binary with the reason.
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
  return MustTask(pool, ref);
}

// Polls `cond` for at most `limit`.
template <class Cond>
bool Eventually(Cond cond, absl::Duration limit = absl::Seconds(10)) {
  return WaitUntil(cond, limit);
}

}  // namespace procpool::testing

#endif  // PROCPOOL_TESTS_API_TEST_ENV_H_
