// The sandbox's policy as data (sandbox_policy.h) and the worker's
// sandbox flags (worker_command.h): what is allowed, on what arguments,
// and how the layers in force are described.

#include "pool/internal/sandbox_policy.h"

#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pool/internal/worker_command.h"

namespace procpool::internal {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::set<std::string> Names(const std::vector<SyscallRule>& rules) {
  std::set<std::string> names;
  for (const SyscallRule& r : rules) names.insert(r.name);
  return names;
}

SyscallCondition ConditionOf(const std::vector<SyscallRule>& rules, const std::string& name) {
  for (const SyscallRule& r : rules) {
    if (name == r.name) return r.condition;
  }
  ADD_FAILURE() << name << " is not in the allowlist";
  return SyscallCondition::kAlways;
}

TEST(SeccompAllowlistTest, EscapesAreNotAllowed) {
  for (bool sanitizer : {false, true}) {
    const std::set<std::string> allowed = Names(SeccompAllowlist(sanitizer));
    for (const char* escape :
         {"execve", "execveat", "fork", "vfork", "ptrace", "process_vm_readv",
          "process_vm_writev", "socket", "connect", "bind", "listen", "accept", "accept4",
          "tkill" /* only in sanitizer builds, below */, "pidfd_open", "pidfd_send_signal",
          "pidfd_getfd", "mount", "umount2", "unshare", "setns", "chroot", "pivot_root",
          "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
          "keyctl", "add_key", "init_module", "finit_module", "kexec_load", "reboot",
          "setuid", "setgid", "setrlimit", "chmod", "fchmod", "chown", "link", "symlink",
          "mknod", "personality", "kcmp", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
          "landlock_restrict_self", "seccomp"}) {
      if (sanitizer && (std::string(escape) == "tkill" || std::string(escape) == "personality")) {
        continue;
      }
      EXPECT_EQ(allowed.count(escape), 0u) << escape << (sanitizer ? " (sanitizer build)" : "");
    }
  }
}

TEST(SeccompAllowlistTest, ProcessesAndSignalsAreConditional) {
  const std::vector<SyscallRule> rules = SeccompAllowlist(false);
  EXPECT_EQ(ConditionOf(rules, "clone"), SyscallCondition::kThreadsOnly);
  EXPECT_EQ(ConditionOf(rules, "clone3"), SyscallCondition::kFailEnosys);
  EXPECT_EQ(ConditionOf(rules, "kill"), SyscallCondition::kSelf);
  EXPECT_EQ(ConditionOf(rules, "tgkill"), SyscallCondition::kSelfThreadGroup);
  EXPECT_EQ(ConditionOf(rules, "socketpair"), SyscallCondition::kUnixOnly);
  EXPECT_EQ(ConditionOf(rules, "ioctl"), SyscallCondition::kTerminalQueries);
  EXPECT_EQ(ConditionOf(rules, "prctl"), SyscallCondition::kHarmlessPrctl);
  EXPECT_EQ(ConditionOf(rules, "prlimit64"), SyscallCondition::kReadLimitsOnly);
  // Sanitizer builds relax prctl only, and say so at compile time.
  EXPECT_EQ(ConditionOf(SeccompAllowlist(true), "prctl"), SyscallCondition::kAlways);
  EXPECT_EQ(ConditionOf(SeccompAllowlist(true), "clone"), SyscallCondition::kThreadsOnly);
}

TEST(SeccompAllowlistTest, WhatServingTasksNeedIsAllowed) {
  const std::set<std::string> allowed = Names(SeccompAllowlist(false));
  for (const char* needed : {"read", "write", "openat", "close", "mmap", "munmap", "mprotect",
                             "brk", "futex", "ftruncate", "fstat", "clock_gettime",
                             "getrusage", "rt_sigaction", "exit_group", "sendmsg", "recvmsg",
                             "getrandom", "madvise", "mremap"}) {
    EXPECT_EQ(allowed.count(needed), 1u) << needed;
  }
}

TEST(LandlockRulesTest, SystemLibrariesPluginsAndGivenPaths) {
  const std::vector<SandboxPathRule> rules =
      LandlockRules({"/opt/p/libtext.so", "/srv/plugins/libmath.so"}, {"/data/in"},
                    {"/data/out"}, false);
  auto find = [&](const std::string& path) -> const SandboxPathRule* {
    for (const SandboxPathRule& r : rules) {
      if (r.path == path) return &r;
    }
    return nullptr;
  };
  for (const char* ro : {"/usr", "/lib", "/opt/p", "/srv/plugins", "/data/in", "/proc/self/maps"}) {
    ASSERT_NE(find(ro), nullptr) << ro;
    EXPECT_FALSE(find(ro)->writable) << ro;
  }
  for (const char* rw : {"/data/out", "/dev/null"}) {
    ASSERT_NE(find(rw), nullptr) << rw;
    EXPECT_TRUE(find(rw)->writable) << rw;
  }
  // Not the caller's home, its temporary directory, /etc as a whole, or
  // the worker's environment.
  for (const char* no : {"/", "/root", "/home", "/tmp", "/etc", "/proc/self/environ", "/proc/self"}) {
    EXPECT_EQ(find(no), nullptr) << no;
  }
  // Sanitizer builds read /proc/self whole (symbolizing a report).
  bool proc_self = false;
  for (const SandboxPathRule& r : LandlockRules({}, {}, {}, true)) proc_self |= r.path == "/proc/self";
  EXPECT_TRUE(proc_self);
}

TEST(LandlockRulesTest, RightsByAbi) {
  EXPECT_EQ(LandlockHandledFs(0), 0u);
  EXPECT_EQ(LandlockHandledFs(1), (1u << 13) - 1);
  EXPECT_EQ(LandlockHandledFs(3), (1u << 15) - 1);
  EXPECT_EQ(LandlockHandledFs(7), (1u << 16) - 1);
  EXPECT_EQ(LandlockReadOnlyFs(7), (1u << 2) | (1u << 3));  // READ_FILE | READ_DIR
  EXPECT_EQ(DirectoryOf("/a/b/lib.so"), "/a/b");
  EXPECT_EQ(DirectoryOf("/lib.so"), "/");
  EXPECT_EQ(DirectoryOf("lib.so"), ".");
}

TEST(DescribeSandboxTest, SaysWhatIsInForce) {
  EXPECT_EQ(DescribeSandbox(0), "off");
  const uint32_t full = kSandboxApplied | kSandboxNoNewPrivs | kSandboxSeccomp |
                        kSandboxNetNamespace | kSandboxLandlockFs | kSandboxLandlockNet |
                        kSandboxLandlockSignal | kSandboxCapsDropped |
                        (7u << kSandboxLandlockAbiShift);
  EXPECT_EQ(LandlockAbiOf(full), 7);
  EXPECT_EQ(DescribeSandbox(full),
            "seccomp allowlist (denied calls fail EPERM), no_new_privs, network namespace, "
            "Landlock ABI 7 (files, TCP, signals), capabilities dropped");
  const std::string bare = DescribeSandbox(kSandboxApplied | kSandboxNoNewPrivs | kSandboxSeccomp |
                                           kSandboxSeccompKills);
  EXPECT_THAT(bare, HasSubstr("denied calls stop the worker"));
  EXPECT_THAT(bare, HasSubstr("no Landlock (the kernel lacks it): files not restricted"));
  EXPECT_THAT(bare, Not(HasSubstr("network namespace")));  // not asked for
  EXPECT_THAT(DescribeSandbox(kSandboxApplied | kSandboxNetNamespaceAsked),
              HasSubstr("no network namespace (not permitted)"));
}

TEST(WorkerCommandTest, SandboxFlagsRoundTrip) {
  WorkerCommand c;
  c.parent = 42;
  c.plugins = {"/p/libx.so"};
  c.sandbox = true;
  c.sandbox_stop_on_denied = true;
  c.sandbox_read = {"/in", "/with=equals"};
  c.sandbox_write = {"/out"};
  c.sandbox_max_file_bytes = 1 << 20;
  c.sandbox_max_processes = 5;
  c.sandbox_netns = true;
  const std::vector<std::string> argv = c.ToArgv("procpool_worker");
  std::vector<const char*> cargv;
  for (const std::string& a : argv) cargv.push_back(a.c_str());
  absl::StatusOr<WorkerCommand> parsed = WorkerCommand::Parse(cargv.size(), cargv.data());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->sandbox);
  EXPECT_TRUE(parsed->sandbox_stop_on_denied);
  EXPECT_EQ(parsed->sandbox_read, c.sandbox_read);
  EXPECT_EQ(parsed->sandbox_write, c.sandbox_write);
  EXPECT_EQ(parsed->sandbox_max_file_bytes, c.sandbox_max_file_bytes);
  EXPECT_EQ(parsed->sandbox_max_processes, 5u);
  EXPECT_TRUE(parsed->sandbox_netns);
  EXPECT_EQ(parsed->plugins, c.plugins);

  c.sandbox = false;  // the other flags are then not written
  const std::vector<std::string> plain = c.ToArgv("procpool_worker");
  for (const std::string& a : plain) EXPECT_FALSE(a.rfind("--sandbox", 0) == 0) << a;

  const char* orphan[] = {"w", "--fd=3", "--status-fd=4", "--parent=1", "--sandbox-read=/x"};
  EXPECT_EQ(WorkerCommand::Parse(5, orphan).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(WorkerCommandTest, TemplateAndPreloadRoundTrip) {
  WorkerCommand c;
  c.zygote = true;
  c.parent = 42;
  c.plugins = {"/p/libx.so"};
  c.preload_task = "load_tables";
  c.preload_fingerprint = 77;
  c.preload_args = std::string("\0\xff args", 7);
  const std::vector<std::string> argv = c.ToArgv("procpool_worker");
  std::vector<const char*> cargv;
  for (const std::string& a : argv) cargv.push_back(a.c_str());
  absl::StatusOr<WorkerCommand> parsed = WorkerCommand::Parse(cargv.size(), cargv.data());
  ASSERT_TRUE(parsed.ok()) << parsed.status();  // no --status-fd needed
  EXPECT_TRUE(parsed->zygote);
  EXPECT_EQ(parsed->preload_task, "load_tables");
  EXPECT_EQ(parsed->preload_fingerprint, 77u);
  EXPECT_EQ(parsed->preload_args, c.preload_args);
  EXPECT_EQ(parsed->plugins, c.plugins);

  const char* worker_without_status[] = {"w", "--fd=3", "--parent=1"};
  EXPECT_EQ(WorkerCommand::Parse(3, worker_without_status).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace procpool::internal
