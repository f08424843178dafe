// Registers the fault-injection tasks; built into libfaults.so (test-only).
#include "plugins/faults/faults.h"
#include "tasks/task.h"

namespace procpool::faults {

PROCPOOL_TASK("throw", Throw);
PROCPOOL_TASK("check_non_negative", CheckNonNegative);
PROCPOOL_TASK("throw_int", ThrowInt);
PROCPOOL_TASK("abort", Abort);
PROCPOOL_TASK("segfault", Segfault);
PROCPOOL_TASK("exit", Exit);
PROCPOOL_TASK("sleep_ms", SleepMs);
PROCPOOL_TASK("hang", Hang);
PROCPOOL_TASK("huge", Huge);
PROCPOOL_TASK("crash_on", CrashOn);
PROCPOOL_TASK("chatter", Chatter);
PROCPOOL_TASK("pid", Pid);
PROCPOOL_TASK("hog", Hog);
PROCPOOL_TASK("chatter_then_crash", ChatterThenCrash);
PROCPOOL_TASK("scribble", Scribble);
PROCPOOL_TASK("crash_first_time", CrashFirstTime);
PROCPOOL_TASK("set_marker", SetMarker);
PROCPOOL_TASK("get_marker", GetMarker);

}  // namespace procpool::faults

PROCPOOL_PLUGIN("faults")
