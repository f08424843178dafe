// Registers the hostile tasks; built into libhostile.so (test-only).
#include "tasks/task.h"
#include "tests/testdata/hostile.h"

namespace procpool::hostile {

PROCPOOL_TASK("hostile_read", ReadFile);
PROCPOOL_TASK("hostile_write", WriteFile);
PROCPOOL_TASK("hostile_connect", ConnectTcp);
PROCPOOL_TASK("hostile_exec", ExecShell);
PROCPOOL_TASK("hostile_ptrace_parent", PtraceParent);
PROCPOOL_TASK("hostile_signal_parent", SignalParent);
PROCPOOL_TASK("hostile_fork", ForkSurvivor);
PROCPOOL_TASK("echo", Echo);

}  // namespace procpool::hostile

PROCPOOL_PLUGIN("hostile")
