#include "pool/internal/sandbox.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "pool/internal/sandbox_policy.h"
#include "pool/internal/status_macros.h"
#include "pool/internal/unique_fd.h"

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif

namespace procpool::internal {

namespace {

// Landlock's user API, up to ABI 6 (Debian 12's linux/landlock.h has ABI 2).
struct LandlockRulesetAttr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;  // ABI 4
  uint64_t scoped;              // ABI 6
};
struct __attribute__((packed)) LandlockPathBeneathAttr {
  uint64_t allowed_access;
  int32_t parent_fd;
};
constexpr uint32_t kLandlockCreateRulesetVersion = 1u << 0;
constexpr int kLandlockRulePathBeneath = 1;
constexpr uint64_t kLandlockNetBindTcp = 1ull << 0;
constexpr uint64_t kLandlockNetConnectTcp = 1ull << 1;
constexpr uint64_t kLandlockScopeAbstractUnixSocket = 1ull << 0;
constexpr uint64_t kLandlockScopeSignal = 1ull << 1;
// The rights Landlock accepts on a path that is not a directory.
constexpr uint64_t kLandlockFileRights =
    (1ull << 0) | (1ull << 1) | (1ull << 2) | (1ull << 14) | (1ull << 15);

constexpr unsigned long kPrSetVma = 0x53564d41;

// The SIGSYS handler's state (kill_on_denied): names of the system calls
// by number, resolved before the filter is loaded, since the handler may
// not allocate.
constexpr int kMaxSyscallNumber = 512;
constexpr size_t kMaxSyscallName = 32;
DeniedCallRecord g_denied;
char (*g_syscall_names)[kMaxSyscallName] = nullptr;

void WriteStderr(const char* s) {
  const ssize_t r = ::write(STDERR_FILENO, s, std::strlen(s));
  (void)r;
}

void OnDeniedCall(int, siginfo_t* info, void*) {
  const int nr = info->si_syscall;
  const char* name = (nr >= 0 && nr < kMaxSyscallNumber && g_syscall_names != nullptr &&
                      g_syscall_names[nr][0] != '\0')
                         ? g_syscall_names[nr]
                         : "unknown";
  if (g_denied.name != nullptr && g_denied.name_size > 0) {
    size_t n = std::strlen(name);
    if (n >= g_denied.name_size) n = g_denied.name_size - 1;
    std::memcpy(g_denied.name, name, n);
    g_denied.name[n] = '\0';
  }
  if (g_denied.number_plus_one != nullptr) {
    g_denied.number_plus_one->store(static_cast<uint32_t>(nr) + 1, std::memory_order_release);
  }
  char num[16];
  int len = 0;
  for (unsigned v = static_cast<unsigned>(nr); len == 0 || v > 0; v /= 10) num[len++] = '0' + v % 10;
  char digits[16];
  for (int i = 0; i < len; ++i) digits[i] = num[len - 1 - i];
  digits[len] = '\0';
  WriteStderr("procpool_worker: the sandbox denied system call ");
  WriteStderr(name);
  WriteStderr(" (");
  WriteStderr(digits);
  WriteStderr("); stopping the worker\n");
  // Die of SIGSYS once the handler returns (the signal is blocked until then).
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(SIGSYS, &dfl, nullptr);
  ::syscall(SYS_tgkill, ::getpid(), ::syscall(SYS_gettid), SIGSYS);
}

absl::Status InstallDeniedCallHandler(DeniedCallRecord denied) {
  g_denied = denied;
  static char names[kMaxSyscallNumber][kMaxSyscallName];
  for (int nr = 0; nr < kMaxSyscallNumber; ++nr) {
    char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
    if (name != nullptr) {
      std::strncpy(names[nr], name, kMaxSyscallName - 1);
      ::free(name);
    }
  }
  g_syscall_names = names;
  struct sigaction sa {};
  sa.sa_sigaction = &OnDeniedCall;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (::sigaction(SIGSYS, &sa, nullptr) != 0) return ErrnoToStatus("sigaction(SIGSYS)", errno);
  return absl::OkStatus();
}

absl::Status SetLimit(int resource, const char* name, uint64_t value) {
  rlimit lim{static_cast<rlim_t>(value), static_cast<rlim_t>(value)};
  if (::setrlimit(resource, &lim) != 0) return ErrnoToStatus(absl::StrCat("setrlimit(", name, ")"), errno);
  return absl::OkStatus();
}

// Applies Landlock; returns the layer bits (with the ABI), 0 without Landlock.
absl::StatusOr<uint32_t> ApplyLandlock(const SandboxConfig& config) {
  const long abi_or_error = ::syscall(SYS_landlock_create_ruleset, nullptr, 0,
                                      kLandlockCreateRulesetVersion);
  if (abi_or_error < 0) {
    if (errno == ENOSYS || errno == EOPNOTSUPP) return 0u;  // no Landlock here
    return ErrnoToStatus("landlock_create_ruleset (version)", errno);
  }
  const int abi = static_cast<int>(abi_or_error);
  LandlockRulesetAttr attr{};
  attr.handled_access_fs = LandlockHandledFs(abi);
  uint32_t layers = kSandboxLandlockFs;
  if (abi >= 4) {
    attr.handled_access_net = kLandlockNetBindTcp | kLandlockNetConnectTcp;
    layers |= kSandboxLandlockNet;
  }
  if (abi >= 6) {
    attr.scoped = kLandlockScopeAbstractUnixSocket | kLandlockScopeSignal;
    layers |= kSandboxLandlockSignal;
  }
  const size_t attr_size = abi >= 6 ? sizeof(attr)
                           : abi >= 4 ? offsetof(LandlockRulesetAttr, scoped)
                                      : offsetof(LandlockRulesetAttr, handled_access_net);
  UniqueFd ruleset(static_cast<int>(::syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0)));
  if (!ruleset) return ErrnoToStatus("landlock_create_ruleset", errno);

  std::vector<std::string> plugins;
  for (const std::string& p : config.plugins) {
    char real[PATH_MAX];
    plugins.push_back(::realpath(p.c_str(), real) != nullptr ? std::string(real) : p);
  }
  for (const SandboxPathRule& rule : LandlockRules(plugins, config.read_paths, config.write_paths,
                                                   SandboxSanitizerBuild())) {
    UniqueFd fd(::open(rule.path.c_str(), O_PATH | O_CLOEXEC));
    if (!fd) {
      if (errno == ENOENT) continue;  // e.g. no /lib64 on this system
      return ErrnoToStatus(absl::StrCat("sandbox path ", rule.path), errno);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return ErrnoToStatus(absl::StrCat("fstat ", rule.path), errno);
    LandlockPathBeneathAttr beneath{};
    beneath.allowed_access = rule.writable ? attr.handled_access_fs : LandlockReadOnlyFs(abi);
    if (!S_ISDIR(st.st_mode)) beneath.allowed_access &= kLandlockFileRights;
    beneath.parent_fd = fd.get();
    if (::syscall(SYS_landlock_add_rule, ruleset.get(), kLandlockRulePathBeneath, &beneath, 0) != 0) {
      return ErrnoToStatus(absl::StrCat("landlock_add_rule ", rule.path), errno);
    }
  }
  if (::syscall(SYS_landlock_restrict_self, ruleset.get(), 0) != 0) {
    return ErrnoToStatus("landlock_restrict_self", errno);
  }
  return layers | (static_cast<uint32_t>(abi) << kSandboxLandlockAbiShift);
}

// Drops every capability; false if the process may not (then it had none
// worth dropping or keeps them: the report says which).
bool DropCapabilities() {
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  for (int cap = 0; cap <= 63; ++cap) {
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno == EINVAL) break;
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  return ::syscall(SYS_capset, &header, data) == 0;
}

absl::Status AddRule(scmp_filter_ctx ctx, int nr, const SyscallRule& rule) {
  auto add = [&](uint32_t action, unsigned count, const scmp_arg_cmp* cmp) -> absl::Status {
    const int rc = seccomp_rule_add_array(ctx, action, nr, count, cmp);
    if (rc != 0) return ErrnoToStatus(absl::StrCat("seccomp_rule_add(", rule.name, ")"), -rc);
    return absl::OkStatus();
  };
  auto arg_is = [&](unsigned arg, uint64_t value) {
    const scmp_arg_cmp cmp = {arg, SCMP_CMP_MASKED_EQ, 0xffffffffu, value & 0xffffffffu};
    return add(SCMP_ACT_ALLOW, 1, &cmp);
  };
  const uint32_t self = static_cast<uint32_t>(::getpid());
  switch (rule.condition) {
    case SyscallCondition::kAlways:
      return add(SCMP_ACT_ALLOW, 0, nullptr);
    case SyscallCondition::kFailEnosys:
      return add(SCMP_ACT_ERRNO(ENOSYS), 0, nullptr);
    case SyscallCondition::kThreadsOnly: {
      const scmp_arg_cmp cmp = {0, SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD};
      return add(SCMP_ACT_ALLOW, 1, &cmp);
    }
    case SyscallCondition::kUnixOnly:
      return arg_is(0, AF_UNIX);
    case SyscallCondition::kSelf:
      PROCPOOL_RETURN_IF_ERROR(arg_is(0, self));
      PROCPOOL_RETURN_IF_ERROR(arg_is(0, 0));
      return arg_is(0, static_cast<uint32_t>(-static_cast<int32_t>(self)));
    case SyscallCondition::kSelfThreadGroup:
      return arg_is(0, self);
    case SyscallCondition::kTerminalQueries:
      for (unsigned long request : {TCGETS, TIOCGWINSZ, FIONREAD, FIONBIO, FIOCLEX, FIONCLEX}) {
        PROCPOOL_RETURN_IF_ERROR(arg_is(1, request));
      }
      return absl::OkStatus();
    case SyscallCondition::kHarmlessPrctl:
      for (unsigned long option : {static_cast<unsigned long>(PR_GET_NAME),
                                   static_cast<unsigned long>(PR_SET_NAME),
                                   static_cast<unsigned long>(PR_GET_DUMPABLE),
                                   static_cast<unsigned long>(PR_GET_NO_NEW_PRIVS),
                                   static_cast<unsigned long>(PR_GET_SECCOMP),
                                   static_cast<unsigned long>(PR_CAPBSET_READ), kPrSetVma}) {
        PROCPOOL_RETURN_IF_ERROR(arg_is(0, option));
      }
      return absl::OkStatus();
    case SyscallCondition::kReadLimitsOnly: {
      const scmp_arg_cmp cmp = {2, SCMP_CMP_EQ, 0, 0};
      return add(SCMP_ACT_ALLOW, 1, &cmp);
    }
  }
  return absl::InternalError(absl::StrCat("unknown seccomp condition for ", rule.name));
}

absl::Status LoadSeccomp(bool kill_on_denied) {
  std::unique_ptr<void, void (*)(scmp_filter_ctx)> ctx(
      seccomp_init(kill_on_denied ? SCMP_ACT_TRAP : SCMP_ACT_ERRNO(EPERM)), &seccomp_release);
  if (ctx == nullptr) return absl::InternalError("seccomp_init failed");
  // Every thread the plugins or the initializer started gets the filter too.
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_TSYNC, 1); rc != 0) {
    return ErrnoToStatus("seccomp_attr_set(TSYNC)", -rc);
  }
  for (const SyscallRule& rule : SeccompAllowlist(SandboxSanitizerBuild())) {
    const int nr = seccomp_syscall_resolve_name(rule.name);
    if (nr < 0) continue;  // not a system call of this architecture
    PROCPOOL_RETURN_IF_ERROR(AddRule(ctx.get(), nr, rule));
  }
  if (int rc = seccomp_load(ctx.get()); rc != 0) return ErrnoToStatus("seccomp_load", -rc);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<uint32_t> ApplySandbox(const SandboxConfig& config, DeniedCallRecord denied) {
  uint32_t layers = kSandboxApplied;
  if (config.max_file_bytes > 0) {
    PROCPOOL_RETURN_IF_ERROR(SetLimit(RLIMIT_FSIZE, "RLIMIT_FSIZE", config.max_file_bytes));
    ::signal(SIGXFSZ, SIG_IGN);  // a write past the limit fails with EFBIG
    layers |= kSandboxFileSizeLimit;
  }
  if (config.max_processes > 0) {
    PROCPOOL_RETURN_IF_ERROR(SetLimit(RLIMIT_NPROC, "RLIMIT_NPROC", config.max_processes));
    layers |= kSandboxProcessLimit;
  }
  // Needs CAP_SYS_ADMIN; without it the seccomp filter still refuses new
  // sockets and Landlock TCP.
  if (config.network_namespace) {
    layers |= kSandboxNetNamespaceAsked;
    if (::unshare(CLONE_NEWNET) == 0) layers |= kSandboxNetNamespace;
  }
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return ErrnoToStatus("prctl(PR_SET_NO_NEW_PRIVS)", errno);
  }
  layers |= kSandboxNoNewPrivs;
  PROCPOOL_ASSIGN_OR_RETURN(const uint32_t landlock, ApplyLandlock(config));
  layers |= landlock;
  if (DropCapabilities()) layers |= kSandboxCapsDropped;
  if (config.kill_on_denied) {
    PROCPOOL_RETURN_IF_ERROR(InstallDeniedCallHandler(denied));
    layers |= kSandboxSeccompKills;
  }
  PROCPOOL_RETURN_IF_ERROR(LoadSeccomp(config.kill_on_denied));
  layers |= kSandboxSeccomp;
  return layers;
}

}  // namespace procpool::internal
