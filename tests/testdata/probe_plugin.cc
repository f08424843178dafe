// Registers the probe tasks; built into libprobe.so (test-only).
#include "tasks/task.h"
#include "tests/testdata/probe.h"

namespace procpool::probe {

PROCPOOL_TASK("add3", Add3);
PROCPOOL_TASK("announce_and_hang", AnnounceAndHang);
PROCPOOL_TASK("announce_and_segfault_after_ms", AnnounceAndSegfaultAfterMs);

}  // namespace procpool::probe

PROCPOOL_PLUGIN("probe")
