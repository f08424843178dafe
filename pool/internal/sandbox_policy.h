// The sandbox's policy as plain data: which system calls a sandboxed worker
// may make and on what arguments, which paths it may read or write, which
// Landlock rights exist at which ABI version, and how the layers a worker
// put in force are reported. sandbox.h applies it; the pool reads the
// report. No system calls here, so tests check the policy itself.
//
// Thread-compatible: plain functions of their arguments.

#ifndef PROCPOOL_POOL_INTERNAL_SANDBOX_POLICY_H_
#define PROCPOOL_POOL_INTERNAL_SANDBOX_POLICY_H_

#include <cstdint>
#include <string>
#include <vector>

namespace procpool::internal {

// What a worker put in force, as it reports it in its status page
// (WorkerStatusPage::sandbox_layers). Bits 24..31 hold the Landlock ABI
// version the kernel offered (0: no Landlock).
enum SandboxLayer : uint32_t {
  kSandboxApplied = 1u << 0,
  kSandboxNoNewPrivs = 1u << 1,
  kSandboxSeccomp = 1u << 2,
  kSandboxSeccompKills = 1u << 3,  // a denied call stops the worker (SIGSYS)
  kSandboxNetNamespace = 1u << 4,
  kSandboxLandlockFs = 1u << 5,
  kSandboxLandlockNet = 1u << 6,     // TCP bind/connect (ABI >= 4)
  kSandboxLandlockSignal = 1u << 7,  // signals scoped (ABI >= 6)
  kSandboxCapsDropped = 1u << 8,
  kSandboxFileSizeLimit = 1u << 9,
  kSandboxProcessLimit = 1u << 10,
  kSandboxNetNamespaceAsked = 1u << 11,  // sandbox_network_namespace
};
inline constexpr int kSandboxLandlockAbiShift = 24;

// The Landlock ABI version recorded in `layers`.
int LandlockAbiOf(uint32_t layers);

// One line for PoolStats::sandbox: "off", or the layers in force, e.g.
// "seccomp allowlist (EPERM), no_new_privs, network namespace, Landlock ABI
// 7 (files, TCP, signals), capabilities dropped".
std::string DescribeSandbox(uint32_t layers);

// When a seccomp rule allows a system call.
enum class SyscallCondition {
  kAlways,
  kThreadsOnly,       // clone: only with CLONE_THREAD (no new process)
  kUnixOnly,          // socketpair: only AF_UNIX
  kSelf,              // kill: pid is this process, 0 or -(this process)
  kSelfThreadGroup,   // tgkill: the thread group is this process
  kTerminalQueries,   // ioctl: TCGETS, TIOCGWINSZ, FIONREAD, FIONBIO, FIOCLEX, FIONCLEX
  kHarmlessPrctl,     // prctl: names, dumpable query, VMA names
  kReadLimitsOnly,    // prlimit64: no new limit (reading only)
  kFailEnosys,        // never runs; fails ENOSYS (clone3: glibc falls back to clone)
};

struct SyscallRule {
  const char* name;  // as libseccomp spells it
  SyscallCondition condition = SyscallCondition::kAlways;
};

// True when this file was compiled with AddressSanitizer or
// ThreadSanitizer, whose runtimes need a few more system calls and paths.
bool SandboxSanitizerBuild();

// The system calls a sandboxed worker may make. Everything else fails
// with EPERM, or stops the worker. `sanitizer` adds what the ASan/TSan
// runtimes need (prctl and tkill unrestricted, personality).
std::vector<SyscallRule> SeccompAllowlist(bool sanitizer);

// A path a sandboxed worker may open.
struct SandboxPathRule {
  std::string path;
  bool writable = false;
};

// Landlock's rules for a worker: read-only access to the system's
// libraries (/usr, /lib, /lib64), a few device and /proc/self files, the
// directory of each plugin, and `read_paths`; read-write access to
// /dev/null and `write_paths`. Paths are used as given (the pool makes
// them absolute). `sanitizer` adds /proc/self (symbolizing reports).
std::vector<SandboxPathRule> LandlockRules(const std::vector<std::string>& plugins,
                                           const std::vector<std::string>& read_paths,
                                           const std::vector<std::string>& write_paths,
                                           bool sanitizer);

// Landlock's filesystem rights known at ABI version `abi` (0: none), all
// of which a worker's ruleset handles; and those a read-only path grants.
uint64_t LandlockHandledFs(int abi);
uint64_t LandlockReadOnlyFs(int abi);

// The directory part of `path` ("/a/b/lib.so" -> "/a/b"; "lib.so" -> ".").
std::string DirectoryOf(const std::string& path);

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_SANDBOX_POLICY_H_
