// Misbehaving tasks, for tests of the pool's fault handling. Test-only.

#ifndef PROCPOOL_PLUGINS_FAULTS_FAULTS_H_
#define PROCPOOL_PLUGINS_FAULTS_FAULTS_H_

#include <cstdint>
#include <string>

#include "tasks/task.h"

namespace procpool::faults {

// Throws std::runtime_error(message).
int Throw(const std::string& message);
// Throws std::invalid_argument when x < 0, else returns x.
int CheckNonNegative(int x);
// Throws an int (not a std::exception).
int ThrowInt(int x);
// Calls abort() (SIGABRT).
int Abort(int x);
// Dereferences a null pointer (SIGSEGV).
int Segfault(int x);
// Calls _exit(code).
int Exit(int code);
// Sleeps `ms` milliseconds, then returns ms.
int SleepMs(int ms);
// Never returns.
int Hang(int x);
// Returns a string of `bytes` bytes.
std::string Huge(int64_t bytes);
// Returns x, but crashes with SIGSEGV when x == crash_on.
int CrashOn(int x, int crash_on);
// Writes to stderr, then returns x.
int Chatter(int x);
// Returns the worker's pid.
int Pid(int x);
// Keeps `mib` more MiB of touched memory alive in the worker; returns the
// total held.
int Hog(int mib);
// Creates `path` and crashes (SIGSEGV) if it did not exist; returns 1 if it
// did. With retries, the first run crashes and the second succeeds.
int CrashFirstTime(const std::string& path);
// Writes `lines` numbered lines to stderr, then crashes (SIGSEGV).
int ChatterThenCrash(int lines);
// Writes garbage to the worker's protocol socket (fd 3), then returns x.
int Scribble(int x);
// Sets / reads a per-process value (for initializer tests).
int SetMarker(const std::string& value);
std::string GetMarker(int unused);

inline constexpr TaskRef<int(std::string)> kThrow{"throw"};
inline constexpr TaskRef<int(int)> kCheckNonNegative{"check_non_negative"};
inline constexpr TaskRef<int(int)> kThrowInt{"throw_int"};
inline constexpr TaskRef<int(int)> kAbort{"abort"};
inline constexpr TaskRef<int(int)> kSegfault{"segfault"};
inline constexpr TaskRef<int(int)> kExit{"exit"};
inline constexpr TaskRef<int(int)> kSleepMs{"sleep_ms"};
inline constexpr TaskRef<int(int)> kHang{"hang"};
inline constexpr TaskRef<std::string(int64_t)> kHuge{"huge"};
inline constexpr TaskRef<int(int, int)> kCrashOn{"crash_on"};
inline constexpr TaskRef<int(int)> kChatter{"chatter"};
inline constexpr TaskRef<int(int)> kPid{"pid"};
inline constexpr TaskRef<int(int)> kHog{"hog"};
inline constexpr TaskRef<int(int)> kChatterThenCrash{"chatter_then_crash"};
inline constexpr TaskRef<int(int)> kScribble{"scribble"};
inline constexpr TaskRef<int(std::string)> kCrashFirstTime{"crash_first_time"};
inline constexpr TaskRef<int(std::string)> kSetMarker{"set_marker"};
inline constexpr TaskRef<std::string(int)> kGetMarker{"get_marker"};

}  // namespace procpool::faults

#endif  // PROCPOOL_PLUGINS_FAULTS_FAULTS_H_
