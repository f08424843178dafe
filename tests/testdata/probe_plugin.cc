// Registers the probe tasks; built into libprobe.so (test-only).
#include "tasks/task.h"
#include "tests/testdata/probe.h"

namespace procpool::probe {

PROCPOOL_TASK("add3", Add3);
PROCPOOL_TASK("allocate_forever", AllocateForever);
PROCPOOL_TASK("allocate_mib", AllocateMib);
PROCPOOL_TASK("spin_forever", SpinForever);
PROCPOOL_TASK("open_files_forever", OpenFilesForever);
PROCPOOL_TASK("announce_and_hang", AnnounceAndHang);
PROCPOOL_TASK("announce_and_segfault_after_ms", AnnounceAndSegfaultAfterMs);
PROCPOOL_TASK("close_fds_and_return", CloseFdsAndReturn);
PROCPOOL_TASK("close_socket_sleep_then_die", CloseSocketSleepThenDie);
PROCPOOL_TASK("fork_sleeper_then_crash", ForkSleeperThenCrash);
PROCPOOL_TASK("print_to_stdout", PrintToStdout);
PROCPOOL_TASK("stop_self", StopSelf);
PROCPOOL_TASK("touch", Touch);
PROCPOOL_TASK("hang_if_exists", HangIfExists);
PROCPOOL_TASK("echo_unless_exists", EchoUnlessExists);
PROCPOOL_TASK("remember", Remember);
PROCPOOL_TASK("remembered", Remembered);
PROCPOOL_TASK("start_thread", StartThread);

}  // namespace procpool::probe

PROCPOOL_PLUGIN("probe")
