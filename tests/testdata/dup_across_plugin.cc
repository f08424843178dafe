// A plugin whose task "add" clashes with the math plugin's (bad input when
// both are loaded).
#include "tasks/task.h"

namespace {
int Add(int x, int y) { return x - y; }
}  // namespace

PROCPOOL_TASK("add", Add);
PROCPOOL_PLUGIN("dup_across")
