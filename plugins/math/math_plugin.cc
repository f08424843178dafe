// Registers the math tasks; built into libmath.so.
#include "plugins/math/math.h"
#include "tasks/task.h"

namespace procpool::math {

PROCPOOL_TASK("slow_add", SlowAdd);
PROCPOOL_TASK("add", Add);
PROCPOOL_TASK("noop", Noop);
PROCPOOL_TASK("identity", Identity);
PROCPOOL_TASK("spin", Spin);
PROCPOOL_TASK("sum_primes_below", SumPrimesBelow);
PROCPOOL_TASK("sum", Sum);

}  // namespace procpool::math

PROCPOOL_PLUGIN("math")
