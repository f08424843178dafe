// Runs the scheduler's simulation (scheduler_sim.h) over many seeds.
//
//   bazel test //tests/pool/internal:scheduler_sim_test   # the CI's seeds
//   SCHEDULER_SIM_SEEDS=1000000 bazel-bin/tests/pool/internal/scheduler_sim_test
//                                                        # a long soak
//   SCHEDULER_SIM_SEED=1234 bazel-bin/tests/pool/internal/scheduler_sim_test
//                                                        # replays one seed
// SCHEDULER_SIM_FIRST_SEED moves the range (to soak new seeds).

#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "gtest/gtest.h"
#include "tests/pool/internal/scheduler_sim.h"

namespace procpool::internal::sim {
namespace {

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  uint64_t out = 0;
  return v != nullptr && absl::SimpleAtoi(v, &out) ? out : fallback;
}

void RunSeeds(bool agents) {
  uint64_t first = EnvOr("SCHEDULER_SIM_FIRST_SEED", 0);
  // Fewer under the sanitizers, which make a run about ten times slower.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  uint64_t count = EnvOr("SCHEDULER_SIM_SEEDS", 200);
#else
  uint64_t count = EnvOr("SCHEDULER_SIM_SEEDS", 2000);
#endif
  if (const char* one = std::getenv("SCHEDULER_SIM_SEED")) {
    ASSERT_TRUE(absl::SimpleAtoi(one, &first)) << one;
    count = 1;
  }
  uint64_t steps = 0, tasks = 0, failures = 0;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    Result r = Run(seed, agents);
    steps += r.steps;
    tasks += r.tasks;
    if (!r.ok) {
      ++failures;
      if (failures <= 5) {
        ADD_FAILURE() << r.failure << "\n  replay: SCHEDULER_SIM_SEED=" << seed
                      << " bazel-bin/tests/pool/internal/scheduler_sim_test";
      }
    }
  }
  EXPECT_EQ(failures, 0u) << "of " << count << " seeds";
  std::printf("%llu seeds, %llu tasks, %llu steps, %llu failed\n",
              static_cast<unsigned long long>(count), static_cast<unsigned long long>(tasks),
              static_cast<unsigned long long>(steps),
              static_cast<unsigned long long>(failures));
}

TEST(SchedulerSimulationTest, WorkerProcessesKeepEveryGuarantee) { RunSeeds(false); }

TEST(SchedulerSimulationTest, MpiAgentsKeepEveryGuarantee) { RunSeeds(true); }

}  // namespace
}  // namespace procpool::internal::sim
