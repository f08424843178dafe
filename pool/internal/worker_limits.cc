#include "pool/internal/worker_limits.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <new>

#include "absl/strings/str_cat.h"
#include "pool/internal/sanitizers.h"

namespace procpool::internal {
namespace {

struct State {
  WorkerStatusPage* page = nullptr;
  uint64_t data_bytes = 0;
  uint64_t cpu_ns = 0;      // per task (0: none)
  timer_t cpu_timer{};      // on CLOCK_PROCESS_CPUTIME_ID, raising SIGXCPU
  // The task (and chunk item) the timer was last armed for, and its
  // process CPU time at the start: a signal meant for an earlier task is
  // ignored. Written before the timer is armed; read by the handler.
  std::atomic<uint64_t> armed_task{0};
  std::atomic<uint32_t> armed_item{0};
  std::atomic<uint64_t> start_ns{0};
  uint64_t open_files = 0;
  int statm_fd = -1;
};
State g;

// ThreadSanitizer runs a signal handler only when the thread next enters
// one of its interceptors, which a task spinning in pure computation never
// does. There SIGXCPU keeps its default action (the kernel ends the
// worker), and the pool reads the signal.
constexpr bool kHandlerCanBeDeferred = kThreadSanitizer;

uint64_t ProcessCpuNs() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

// Arms the CPU timer to fire once the process has used the limit's worth
// of CPU from now.
bool ArmCpu() {
  itimerspec its{};
  its.it_value.tv_sec = static_cast<time_t>(g.cpu_ns / 1'000'000'000u);
  its.it_value.tv_nsec = static_cast<long>(g.cpu_ns % 1'000'000'000u);
  return ::timer_settime(g.cpu_timer, 0, &its, nullptr) == 0;
}

// Private writable memory (VmData), from /proc/self/statm's sixth field
// ("data", pages). Async-signal-safe and allocation-free.
uint64_t DataBytes() {
  if (g.statm_fd < 0) return 0;
  char buf[160];
  const ssize_t n = ::pread(g.statm_fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return 0;
  int field = 0;
  uint64_t value = 0;
  for (ssize_t i = 0; i < n; ++i) {
    if (buf[i] == ' ' || buf[i] == '\n') {
      if (field == 5) return value * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
      ++field;
      value = 0;
    } else if (buf[i] >= '0' && buf[i] <= '9') {
      value = value * 10 + static_cast<uint64_t>(buf[i] - '0');
    }
  }
  return 0;
}

[[noreturn]] void Crossed(LimitKind kind, uint64_t observed) {
  g.page->limit_observed.store(observed, std::memory_order_relaxed);
  g.page->limit_crossed.store(static_cast<uint32_t>(kind), std::memory_order_release);
  ::_exit(kLimitExitCode);
}

// std::new_handler: an allocation failed under RLIMIT_DATA.
void OnAllocationFailure() { Crossed(LimitKind::kMemory, DataBytes()); }

void OnSigxcpu(int) {
  const uint64_t now = ProcessCpuNs();
  const uint64_t start = g.start_ns.load(std::memory_order_acquire);
  const uint64_t task = g.page->running_task.load(std::memory_order_acquire);
  // A timer armed for a task that has ended (it fired between tasks, or as
  // the next one started) is no one's crossing: the next task re-arms it.
  if (task == 0 || task != g.armed_task.load(std::memory_order_acquire) ||
      g.page->running_item.load(std::memory_order_acquire) !=
          g.armed_item.load(std::memory_order_acquire) ||
      now < start + g.cpu_ns) {
    return;
  }
  Crossed(LimitKind::kCpu, now - start);
}

// The highest descriptor open now, or -1.
int HighestFd() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  int highest = -1;
  while (dirent* e = ::readdir(d)) {
    int fd = 0;
    bool number = e->d_name[0] != '\0';
    for (const char* c = e->d_name; *c != '\0'; ++c) {
      if (*c < '0' || *c > '9') number = false;
      else fd = fd * 10 + (*c - '0');
    }
    if (number && fd != ::dirfd(d) && fd > highest) highest = fd;
  }
  ::closedir(d);
  return highest;
}

}  // namespace

absl::Status ApplyWorkerLimits(const WorkerLimitArgs& args, WorkerStatusPage* page) {
  if (!args.any()) return absl::OkStatus();
  g.page = page;
  const std::string who = absl::StrCat("worker pid ", ::getpid());
  if (args.open_files > 0) {
    const int highest = HighestFd();
    if (highest >= 0 && static_cast<uint64_t>(highest) + 1 >= args.open_files) {
      return absl::FailedPreconditionError(absl::StrCat(
          "PoolOptions::limits.open_files is ", args.open_files, ", but ", who,
          " already uses descriptor ", highest,
          " after loading its plugins; raise the limit"));
    }
    const rlimit rl{static_cast<rlim_t>(args.open_files), static_cast<rlim_t>(args.open_files)};
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      return absl::InternalError(absl::StrCat("PoolOptions::limits.open_files: ", who,
                                              ": setrlimit(RLIMIT_NOFILE): ",
                                              std::strerror(errno)));
    }
    g.open_files = args.open_files;
  }
  if (args.data_bytes > 0) {
    g.statm_fd = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    const uint64_t now = DataBytes();
    if (now >= args.data_bytes) {
      return absl::FailedPreconditionError(absl::StrCat(
          "PoolOptions::limits.memory_bytes is ", args.data_bytes, " (RLIMIT_DATA), but ",
          who, " already has ", now, " bytes of private memory after loading its plugins"));
    }
    const rlimit rl{static_cast<rlim_t>(args.data_bytes), static_cast<rlim_t>(args.data_bytes)};
    if (::setrlimit(RLIMIT_DATA, &rl) != 0) {
      return absl::InternalError(absl::StrCat("PoolOptions::limits.memory_bytes: ", who,
                                              ": setrlimit(RLIMIT_DATA): ",
                                              std::strerror(errno)));
    }
    g.data_bytes = args.data_bytes;
    std::set_new_handler(&OnAllocationFailure);
  }
  if (args.cpu_ms > 0) {
    struct sigaction sa {};
    sa.sa_handler = &OnSigxcpu;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigevent ev{};
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGXCPU;
    if (kHandlerCanBeDeferred) sa.sa_handler = SIG_DFL;
    if (::sigaction(SIGXCPU, &sa, nullptr) != 0 ||
        ::timer_create(CLOCK_PROCESS_CPUTIME_ID, &ev, &g.cpu_timer) != 0) {
      return absl::InternalError(absl::StrCat("PoolOptions::limits.cpu_per_task: ", who,
                                              ": cannot make a CPU-time timer: ",
                                              std::strerror(errno)));
    }
    g.cpu_ns = args.cpu_ms * 1'000'000u;
  }
  return absl::OkStatus();
}

bool WorkerLimitsActive() { return g.cpu_ns != 0 || g.open_files != 0; }

void BeforeLimitedTask() {
  if (g.cpu_ns != 0) {
    // Who it is for first, then when it started, then the timer: a signal
    // in between is ignored (another task's, or too early).
    g.armed_task.store(g.page->running_task.load(std::memory_order_relaxed),
                       std::memory_order_release);
    g.armed_item.store(g.page->running_item.load(std::memory_order_relaxed),
                       std::memory_order_release);
    g.start_ns.store(ProcessCpuNs(), std::memory_order_release);
    ArmCpu();
  }
  errno = 0;
}

void AfterLimitedTask(bool failed) {
  if (g.open_files == 0) return;
  const int err = errno;
  bool crossed = failed && err == EMFILE;
  if (!crossed) {
    // A full table: the lowest free descriptor is past the limit.
    const int probe = ::fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 0);
    if (probe >= 0) {
      ::close(probe);
    } else {
      crossed = errno == EMFILE;
    }
  }
  if (crossed) {
    std::fflush(stdout);
    Crossed(LimitKind::kOpenFiles, g.open_files);
  }
}

}  // namespace procpool::internal
