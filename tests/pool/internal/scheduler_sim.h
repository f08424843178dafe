// A deterministic simulation of a pool: the real Scheduler against
// simulated worker processes (or MPI agents) and callers, on a simulated
// clock, with every random choice drawn from one seed. After every step it
// checks the scheduler's guarantees (scheduler.h); a run that breaks one
// says which, and replays exactly from its seed.
//
// The simulated workers behave as procpool_worker does: they run calls one
// at a time in arrival order, claim each call before starting it (and skip
// it if the pool took it back), publish what they run, answer a chunk's
// items in one answer, retire after max_tasks_per_child items, and die in
// the ways tasks make them: crashing while running an item, dying after an
// item returned (before the answer went out), hanging, stopping themselves
// (then only SIGKILL ends them), or being killed from outside. Workers also
// fail to start, or hang while starting.

#ifndef PROCPOOL_TESTS_POOL_INTERNAL_SCHEDULER_SIM_H_
#define PROCPOOL_TESTS_POOL_INTERNAL_SCHEDULER_SIM_H_

#include <cstdint>
#include <string>

namespace procpool::internal::sim {

struct Result {
  bool ok = true;
  std::string failure;   // the broken guarantee, with the step it broke at
  uint64_t steps = 0;    // events simulated
  uint64_t tasks = 0;
  uint64_t resolved = 0;
};

// Runs the scenario drawn from `seed` to its end.
Result Run(uint64_t seed, bool agents = false);

}  // namespace procpool::internal::sim

#endif  // PROCPOOL_TESTS_POOL_INTERNAL_SCHEDULER_SIM_H_
