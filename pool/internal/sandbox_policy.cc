#include "pool/internal/sandbox_policy.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "pool/internal/sanitizers.h"

namespace procpool::internal {

namespace {

// Landlock's filesystem rights by the ABI version that introduced them
// (linux/landlock.h; Debian 12's header stops at ABI 2).
constexpr uint64_t kFsExecute = 1ull << 0;
constexpr uint64_t kFsWriteFile = 1ull << 1;
constexpr uint64_t kFsReadFile = 1ull << 2;
constexpr uint64_t kFsReadDir = 1ull << 3;
constexpr uint64_t kFsAbi1 = (1ull << 13) - 1;  // EXECUTE .. MAKE_SYM
constexpr uint64_t kFsRefer = 1ull << 13;       // ABI 2
constexpr uint64_t kFsTruncate = 1ull << 14;    // ABI 3
constexpr uint64_t kFsIoctlDev = 1ull << 15;    // ABI 5

}  // namespace

int LandlockAbiOf(uint32_t layers) {
  return static_cast<int>(layers >> kSandboxLandlockAbiShift);
}

std::string DescribeSandbox(uint32_t layers) {
  if ((layers & kSandboxApplied) == 0) return "off";
  std::vector<std::string> parts;
  if (layers & kSandboxSeccomp) {
    parts.push_back(absl::StrCat("seccomp allowlist (denied calls ",
                                 (layers & kSandboxSeccompKills) ? "stop the worker" : "fail EPERM",
                                 ")"));
  }
  if (layers & kSandboxNoNewPrivs) parts.push_back("no_new_privs");
  if (layers & kSandboxNetNamespace) {
    parts.push_back("network namespace");
  } else if (layers & kSandboxNetNamespaceAsked) {
    parts.push_back("no network namespace (not permitted)");
  }
  const int abi = LandlockAbiOf(layers);
  if (layers & kSandboxLandlockFs) {
    std::vector<std::string> what = {"files"};
    if (layers & kSandboxLandlockNet) what.push_back("TCP");
    if (layers & kSandboxLandlockSignal) what.push_back("signals");
    parts.push_back(absl::StrCat("Landlock ABI ", abi, " (", absl::StrJoin(what, ", "), ")"));
  } else {
    parts.push_back("no Landlock (the kernel lacks it): files not restricted");
  }
  if (layers & kSandboxCapsDropped) parts.push_back("capabilities dropped");
  if (layers & kSandboxFileSizeLimit) parts.push_back("RLIMIT_FSIZE");
  if (layers & kSandboxProcessLimit) parts.push_back("RLIMIT_NPROC");
  return absl::StrJoin(parts, ", ");
}

bool SandboxSanitizerBuild() { return kAddressSanitizer || kThreadSanitizer; }

std::vector<SyscallRule> SeccompAllowlist(bool sanitizer) {
  using C = SyscallCondition;
  std::vector<SyscallRule> rules = {
      // Reading and writing descriptors it has: the pool's socket, pipes,
      // shared memory, files it may open.
      {"read"}, {"write"}, {"readv"}, {"writev"}, {"pread64"}, {"pwrite64"},
      {"preadv"}, {"pwritev"}, {"preadv2"}, {"pwritev2"}, {"lseek"}, {"close"},
      {"close_range"}, {"dup"}, {"dup2"}, {"dup3"}, {"fcntl"}, {"pipe2"},
      {"ftruncate"}, {"fallocate"}, {"fsync"}, {"fdatasync"}, {"memfd_create"},
      {"sendmsg"}, {"recvmsg"}, {"sendto"}, {"recvfrom"}, {"shutdown"},
      {"getsockopt"}, {"setsockopt"}, {"getsockname"},
      {"poll"}, {"ppoll"}, {"select"}, {"pselect6"}, {"epoll_create1"},
      {"epoll_ctl"}, {"epoll_wait"}, {"epoll_pwait"}, {"eventfd2"},
      {"timerfd_create"}, {"timerfd_settime"}, {"timerfd_gettime"},
      // Files, inside what Landlock allows.
      {"open"}, {"openat"}, {"stat"}, {"lstat"}, {"fstat"}, {"newfstatat"},
      {"statx"}, {"access"}, {"faccessat"}, {"faccessat2"}, {"readlink"},
      {"readlinkat"}, {"getdents64"}, {"getcwd"}, {"mkdir"}, {"mkdirat"},
      {"unlink"}, {"unlinkat"}, {"rmdir"}, {"rename"}, {"renameat"}, {"renameat2"},
      {"truncate"},
      // Memory.
      {"brk"}, {"mmap"}, {"munmap"}, {"mremap"}, {"mprotect"}, {"madvise"},
      {"mincore"}, {"msync"}, {"membarrier"},
      // Threads (never processes), and waiting for them.
      {"clone", C::kThreadsOnly}, {"clone3", C::kFailEnosys}, {"futex"},
      {"set_robust_list"}, {"get_robust_list"}, {"rseq"}, {"set_tid_address"},
      {"arch_prctl"}, {"sched_yield"}, {"sched_getaffinity"}, {"sched_getparam"},
      {"sched_getscheduler"}, {"sched_get_priority_max"}, {"sched_get_priority_min"},
      {"getpriority"}, {"exit"}, {"exit_group"}, {"wait4"}, {"waitid"},
      // Time, identity, limits.
      {"clock_gettime"}, {"clock_getres"}, {"clock_nanosleep"}, {"nanosleep"},
      {"gettimeofday"}, {"time"}, {"times"}, {"getrusage"}, {"getitimer"},
      {"setitimer"}, {"alarm"}, {"timer_create"}, {"timer_settime"},
      {"timer_gettime"}, {"timer_getoverrun"}, {"timer_delete"},
      {"getpid"}, {"gettid"}, {"getppid"}, {"getpgrp"}, {"getpgid"}, {"getsid"},
      {"getuid"}, {"geteuid"}, {"getgid"}, {"getegid"}, {"getresuid"},
      {"getresgid"}, {"getgroups"}, {"capget"}, {"uname"}, {"sysinfo"},
      {"getrandom"}, {"getrlimit"}, {"prlimit64", C::kReadLimitsOnly},
      {"ioctl", C::kTerminalQueries}, {"prctl", C::kHarmlessPrctl},
      {"socketpair", C::kUnixOnly},
      // Signals, to itself only.
      {"rt_sigaction"}, {"rt_sigprocmask"}, {"rt_sigreturn"}, {"rt_sigpending"},
      {"rt_sigtimedwait"}, {"rt_sigsuspend"}, {"sigaltstack"}, {"restart_syscall"},
      {"kill", C::kSelf}, {"tgkill", C::kSelfThreadGroup},
  };
  if (sanitizer) {
    // The ASan/TSan runtimes: prctl and tkill for their own threads and
    // reports, personality for TSan's address-space checks.
    for (SyscallRule& r : rules) {
      if (std::string_view(r.name) == "prctl") r.condition = C::kAlways;
    }
    rules.push_back({"tkill"});
    rules.push_back({"personality"});
    rules.push_back({"sched_setaffinity"});
  }
  return rules;
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::vector<SandboxPathRule> LandlockRules(const std::vector<std::string>& plugins,
                                           const std::vector<std::string>& read_paths,
                                           const std::vector<std::string>& write_paths,
                                           bool sanitizer) {
  std::vector<SandboxPathRule> rules = {
      // Shared libraries a plugin may still load (iconv modules, ...) and
      // the data files of the libraries it links.
      {"/usr"}, {"/lib"}, {"/lib64"},
      {"/etc/ld.so.cache"}, {"/etc/localtime"},
      // glibc's CPU count (get_nprocs, sysconf).
      {"/sys/devices/system/cpu"},
      {"/dev/zero"}, {"/dev/urandom"}, {"/dev/random"},
      {"/dev/null", true},
      // The worker's own memory map and sizes, not its environment.
      {"/proc/self/maps"}, {"/proc/self/statm"}, {"/proc/self/stat"},
      {"/proc/self/status"},
  };
  if (sanitizer) rules.push_back({"/proc/self"});
  for (const std::string& p : plugins) rules.push_back({DirectoryOf(p)});
  for (const std::string& p : read_paths) rules.push_back({p});
  for (const std::string& p : write_paths) rules.push_back({p, true});
  return rules;
}

uint64_t LandlockHandledFs(int abi) {
  if (abi <= 0) return 0;
  uint64_t fs = kFsAbi1;
  if (abi >= 2) fs |= kFsRefer;
  if (abi >= 3) fs |= kFsTruncate;
  if (abi >= 5) fs |= kFsIoctlDev;
  return fs;
}

uint64_t LandlockReadOnlyFs(int abi) {
  return abi <= 0 ? 0 : (kFsReadFile | kFsReadDir);
}

static_assert((kFsAbi1 & (kFsExecute | kFsWriteFile | kFsReadFile | kFsReadDir)) ==
              (kFsExecute | kFsWriteFile | kFsReadFile | kFsReadDir));

}  // namespace procpool::internal
