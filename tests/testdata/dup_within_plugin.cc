// A plugin that registers one task name twice (bad input for the pool).
#include "tasks/task.h"

namespace {
int One(int x) { return x; }
int Two(int x) { return 2 * x; }
}  // namespace

PROCPOOL_TASK("twice", One);
PROCPOOL_TASK("twice", Two);
PROCPOOL_PLUGIN("dup_within")
