// Tasks that each try one escape from a worker, as code exploited by
// crafted data would: read a file it was not given, write into the system
// temporary directory, connect over TCP, run a shell, trace or signal the
// pool, leave a process behind. For the sandbox's tests (test-only).
//
// Each returns "succeeded..." when the attempt worked and "failed: <error>
// (errno N)" when the system refused it, so that a test can show both
// sides: refused under the sandbox, allowed without it.

#ifndef PROCPOOL_TESTS_TESTDATA_HOSTILE_H_
#define PROCPOOL_TESTS_TESTDATA_HOSTILE_H_

#include <string>

#include "tasks/task.h"

namespace procpool::hostile {

// Opens `path` and reads it: "succeeded: <its first 64 bytes>".
std::string ReadFile(const std::string& path);

// Creates `path` (exclusively) and writes a line of 18 bytes into it (all
// of it: a short write is retried).
std::string WriteFile(const std::string& path);

// Opens a TCP socket and connects it to 127.0.0.1:`port`.
std::string ConnectTcp(int port);

// execve("/bin/sh", "-c", "echo pwned > `marker`"). When it succeeds the
// worker becomes the shell, which writes `marker` and exits: the task then
// fails as a lost worker, and `marker` exists.
std::string ExecShell(const std::string& marker);

// PTRACE_SEIZE on the worker's parent (the pool's process), then
// PTRACE_INTERRUPT, a wait and PTRACE_DETACH, so that it lets go at once.
std::string PtraceParent(int unused);

// kill(parent, 0): whether it may signal the pool's process at all.
std::string SignalParent(int unused);

// fork()s a child that leaves the worker's process group (setsid) and
// sleeps `seconds`: "succeeded: pid <pid>" (the test kills it).
std::string ForkSurvivor(int seconds);

// Returns `s`: the harmless task that must keep working.
std::string Echo(const std::string& s);

inline constexpr TaskRef<std::string(std::string)> kReadFile{"hostile_read"};
inline constexpr TaskRef<std::string(std::string)> kWriteFile{"hostile_write"};
inline constexpr TaskRef<std::string(int)> kConnectTcp{"hostile_connect"};
inline constexpr TaskRef<std::string(std::string)> kExecShell{"hostile_exec"};
inline constexpr TaskRef<std::string(int)> kPtraceParent{"hostile_ptrace_parent"};
inline constexpr TaskRef<std::string(int)> kSignalParent{"hostile_signal_parent"};
inline constexpr TaskRef<std::string(int)> kForkSurvivor{"hostile_fork"};
inline constexpr TaskRef<std::string(std::string)> kEcho{"echo"};

}  // namespace procpool::hostile

#endif  // PROCPOOL_TESTS_TESTDATA_HOSTILE_H_
