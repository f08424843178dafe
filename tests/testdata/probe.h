// Tasks for tests that the math and faults plugins do not have. Test-only.

#ifndef PROCPOOL_TESTS_TESTDATA_PROBE_H_
#define PROCPOOL_TESTS_TESTDATA_PROBE_H_

#include <string>

#include "tasks/task.h"

namespace procpool::probe {

// x + y + z: a task with three arguments, for Map over three ranges.
int Add3(int x, int y, int z);

// Writes the worker's pid to the file `path` (atomically: a temporary file
// renamed into place), then never returns. Lets a test know that the task
// is running, and in which process.
int AnnounceAndHang(const std::string& path);

// Writes the worker's pid to `path` like AnnounceAndHang, sleeps `ms`
// milliseconds, then dies of SIGSEGV. While it sleeps, the pool may send the
// worker more calls that it will never read.
int AnnounceAndSegfaultAfterMs(const std::string& path, int ms);

// Closes every descriptor from 3 up (the worker's socket among them), then
// returns x: the worker dies after running the task, before it can answer.
int CloseFdsAndReturn(int x);

// Closes the worker's socket (fd 3), sleeps `micros` microseconds, then
// dies of SIGKILL: the pool sees the hang-up well before the exit.
int CloseSocketSleepThenDie(int micros);

// Forks a child that writes its pid to `path` (as AnnounceAndHang does) and
// then sleeps `sleep_ms` milliseconds, holding every descriptor the worker
// had; once the child has announced itself, dies of SIGSEGV.
int ForkSleeperThenCrash(const std::string& path, int sleep_ms);

// Writes `text` and a newline to stdout (fd 1) and flushes; returns its
// length.
int PrintToStdout(const std::string& text);

// Stops its own process with SIGSTOP (nobody continues it), then returns x.
int StopSelf(int x);

// Creates the file `path`; returns 1.
int Touch(const std::string& path);

// Never returns if the file `path` exists; returns 0 at once otherwise.
// As an initializer, it makes workers started after the file appears hang
// before they are ready.
int HangIfExists(const std::string& path);
// Hangs if `s` names a file that exists; otherwise returns `s`.
std::string EchoUnlessExists(const std::string& s);

// ---- Hard limits (PoolOptions::limits) ----
// Allocates `mib` MiB at a time and writes every page of it, without end
// (never returns unless an allocation throws).
int AllocateForever(int mib);
// Allocates `mib` MiB, writes every page of it, frees it; returns `mib`.
int AllocateMib(int mib);
// Burns CPU without end (never returns).
int SpinForever(int x);
// Opens /dev/null again and again, keeping every descriptor, until open()
// fails; then, with `close_all`, closes them first; then throws
// std::system_error with open()'s errno.
int OpenFilesForever(bool close_all);

inline constexpr TaskRef<int(int)> kAllocateForever{"allocate_forever"};
inline constexpr TaskRef<int(int)> kAllocateMib{"allocate_mib"};
inline constexpr TaskRef<int(int)> kSpinForever{"spin_forever"};
inline constexpr TaskRef<int(bool)> kOpenFilesForever{"open_files_forever"};

// Keeps `value` in this process's memory and appends the process's pid and
// a newline to the file `path`; returns 1. As a preload, it shows where
// the preload ran and what the workers inherited from it.
int Remember(const std::string& path, int value);

// The value the last Remember in this process kept (0: none), plus x.
int Remembered(int x);

// Starts a thread that sleeps for good; returns x.
int StartThread(int x);

inline constexpr TaskRef<int(std::string, int)> kRemember{"remember"};
inline constexpr TaskRef<int(int)> kRemembered{"remembered"};
inline constexpr TaskRef<int(int)> kStartThread{"start_thread"};
inline constexpr TaskRef<int(int, int, int)> kAdd3{"add3"};
inline constexpr TaskRef<int(int)> kCloseFdsAndReturn{"close_fds_and_return"};
inline constexpr TaskRef<int(int)> kCloseSocketSleepThenDie{"close_socket_sleep_then_die"};
inline constexpr TaskRef<int(std::string, int)> kForkSleeperThenCrash{
    "fork_sleeper_then_crash"};
inline constexpr TaskRef<int(std::string)> kPrintToStdout{"print_to_stdout"};
inline constexpr TaskRef<int(int)> kStopSelf{"stop_self"};
inline constexpr TaskRef<int(std::string)> kTouch{"touch"};
inline constexpr TaskRef<int(std::string)> kHangIfExists{"hang_if_exists"};
inline constexpr TaskRef<std::string(std::string)> kEchoUnlessExists{"echo_unless_exists"};
inline constexpr TaskRef<int(std::string)> kAnnounceAndHang{
    "announce_and_hang"};
inline constexpr TaskRef<int(std::string, int)> kAnnounceAndSegfaultAfterMs{
    "announce_and_segfault_after_ms"};

}  // namespace procpool::probe

#endif  // PROCPOOL_TESTS_TESTDATA_PROBE_H_
