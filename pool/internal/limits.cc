#include "pool/internal/limits.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <cerrno>
#include "absl/strings/string_view.h"
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "pool/internal/status_macros.h"

namespace procpool::internal {
namespace {

// The whole of a small file (cgroup and proc files), or nullopt.
std::optional<std::string> ReadSmallFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[4096];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

absl::Status WriteSmallFile(const std::string& path, absl::string_view value) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(absl::StrCat("open ", path), errno);
  ssize_t n;
  do {
    n = ::write(fd, value.data(), value.size());
  } while (n < 0 && errno == EINTR);
  const int err = errno;
  ::close(fd);
  if (n < 0) return ErrnoToStatus(absl::StrCat("write '", value, "' to ", path), err);
  return absl::OkStatus();
}

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

uint64_t ReadNumber(const std::string& path) {
  uint64_t v = 0;
  if (std::optional<std::string> s = ReadSmallFile(path)) {
    (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(*s), &v);
  }
  return v;
}

// The value of `key` in a "key value" per line file (memory.events,
// memory.oom_control).
uint64_t ReadKey(const std::string& path, absl::string_view key) {
  std::optional<std::string> s = ReadSmallFile(path);
  if (!s) return 0;
  for (absl::string_view line : absl::StrSplit(*s, '\n')) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(line, ' ');
    uint64_t v = 0;
    if (kv.first == key && absl::SimpleAtoi(kv.second, &v)) return v;
  }
  return 0;
}

std::string Mib(uint64_t bytes) {
  if (bytes % (uint64_t{1} << 20) == 0) return absl::StrCat(bytes >> 20, " MiB");
  return absl::StrCat(absl::SixDigits(static_cast<double>(bytes) / (1 << 20)), " MiB");
}

std::atomic<uint64_t> g_pool_groups{0};

}  // namespace

// ---------------------------------------------------------------------------
// MemoryCgroup

absl::StatusOr<std::unique_ptr<MemoryCgroup>> MemoryCgroup::Create(const std::string& parent,
                                                                   Version version,
                                                                   const std::string& name,
                                                                   uint64_t limit_bytes) {
  const std::string path = absl::StrCat(parent, "/", name);
  if (::mkdir(path.c_str(), 0755) != 0) return ErrnoToStatus(absl::StrCat("mkdir ", path), errno);
  std::unique_ptr<MemoryCgroup> g(new MemoryCgroup(path, version));
  if (version == Version::kV1) {
    if (limit_bytes > 0) {
      PROCPOOL_RETURN_IF_ERROR(
          WriteSmallFile(path + "/memory.limit_in_bytes", absl::StrCat(limit_bytes)));
      // Memory + swap: no way around the limit through swap. Only after
      // the memory limit (it may not be below it).
      if (Exists(path + "/memory.memsw.limit_in_bytes")) {
        PROCPOOL_RETURN_IF_ERROR(WriteSmallFile(path + "/memory.memsw.limit_in_bytes",
                                                absl::StrCat(limit_bytes)));
        g->memsw_ = true;
      }
    }
  } else {
    if (!Exists(path + "/memory.max")) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the memory controller is not enabled for the children of ", parent));
    }
    if (limit_bytes > 0) {
      PROCPOOL_RETURN_IF_ERROR(WriteSmallFile(path + "/memory.max", absl::StrCat(limit_bytes)));
      if (Exists(path + "/memory.swap.max")) {
        PROCPOOL_RETURN_IF_ERROR(WriteSmallFile(path + "/memory.swap.max", "0"));
        g->memsw_ = true;
      }
      // The worker and what its task forked go together.
      if (Exists(path + "/memory.oom.group")) (void)WriteSmallFile(path + "/memory.oom.group", "1");
    } else {
      PROCPOOL_RETURN_IF_ERROR(WriteSmallFile(path + "/cgroup.subtree_control", "+memory"));
    }
  }
  return g;
}

MemoryCgroup::~MemoryCgroup() {
  // Normally empty by now: the worker was reaped and its process group
  // killed. What a task forked into another group may still be exiting.
  for (int attempt = 0; attempt < 200; ++attempt) {
    if (::rmdir(path_.c_str()) == 0 || errno == ENOENT) return;
    if (errno != EBUSY) break;
    if (version_ == Version::kV2 && Exists(path_ + "/cgroup.kill")) {
      (void)WriteSmallFile(path_ + "/cgroup.kill", "1");
    } else if (std::optional<std::string> procs = ReadSmallFile(path_ + "/cgroup.procs")) {
      for (absl::string_view line : absl::StrSplit(*procs, '\n', absl::SkipEmpty())) {
        int pid = 0;
        if (absl::SimpleAtoi(line, &pid) && pid > 0) ::kill(pid, SIGKILL);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

absl::Status MemoryCgroup::AddProcess(pid_t pid) {
  absl::Status s = WriteSmallFile(path_ + "/cgroup.procs", absl::StrCat(pid));
  if (!s.ok() && Exists(absl::StrCat("/proc/", pid)) == false) return absl::OkStatus();
  return s;
}

uint64_t MemoryCgroup::PeakBytes() const {
  return ReadNumber(path_ + (version_ == Version::kV1 ? "/memory.max_usage_in_bytes"
                                                      : "/memory.peak"));
}

uint64_t MemoryCgroup::OomKills() const {
  return version_ == Version::kV1 ? ReadKey(path_ + "/memory.oom_control", "oom_kill")
                                  : ReadKey(path_ + "/memory.events", "oom_kill");
}

absl::StatusOr<std::pair<std::string, MemoryCgroup::Version>> OwnMemoryCgroup() {
  std::optional<std::string> cgroups = ReadSmallFile("/proc/self/cgroup");
  std::optional<std::string> mounts = ReadSmallFile("/proc/self/mountinfo");
  if (!cgroups || !mounts) return absl::NotFoundError("cannot read /proc/self/cgroup");
  std::string v1_path, v2_path;
  bool have_v2 = false;
  for (absl::string_view line : absl::StrSplit(*cgroups, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (f.size() != 3) continue;
    if (f[0] == "0" && f[1].empty()) {
      v2_path = std::string(f[2]);
      have_v2 = true;
    }
    for (absl::string_view c : absl::StrSplit(f[1], ',')) {
      if (c == "memory") v1_path = std::string(f[2]);
    }
  }
  // mountinfo: id parent dev root mountpoint options... - fstype source superoptions
  for (absl::string_view line : absl::StrSplit(*mounts, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> halves = absl::StrSplit(line, " - ");
    std::vector<absl::string_view> a = absl::StrSplit(halves.first, ' ');
    std::vector<absl::string_view> b = absl::StrSplit(halves.second, ' ');
    if (a.size() < 5 || b.size() < 3) continue;
    const absl::string_view root = a[3], mountpoint = a[4];
    auto under = [&](const std::string& path) -> std::optional<std::string> {
      if (root == "/") return absl::StrCat(mountpoint, path == "/" ? "" : path);
      if (absl::StartsWith(path, root)) return absl::StrCat(mountpoint, path.substr(root.size()));
      return std::nullopt;
    };
    if (b[0] == "cgroup" && !v1_path.empty()) {
      for (absl::string_view o : absl::StrSplit(b[2], ',')) {
        if (o != "memory") continue;
        if (std::optional<std::string> dir = under(v1_path)) {
          return std::pair{*dir, MemoryCgroup::Version::kV1};
        }
      }
    }
    if (b[0] == "cgroup2" && have_v2 && v1_path.empty()) {
      if (std::optional<std::string> dir = under(v2_path)) {
        std::optional<std::string> controllers = ReadSmallFile(*dir + "/cgroup.controllers");
        if (controllers && absl::StrContains(*controllers, "memory")) {
          return std::pair{*dir, MemoryCgroup::Version::kV2};
        }
      }
    }
  }
  return absl::NotFoundError("no memory cgroup controller is mounted for this process");
}

// ---------------------------------------------------------------------------
// What an exit says

std::string DescribeLimitCrossing(const WorkerLimits& limits,
                                  const std::string& memory_mechanism,
                                  const LimitFacts& facts) {
  switch (facts.crossed) {
    case LimitKind::kMemory:
      return absl::StrCat("crossed its memory limit of ", Mib(limits.memory_bytes),
                          " (PoolOptions::limits.memory_bytes, ", memory_mechanism,
                          "): an allocation failed with ", Mib(facts.observed),
                          " of private memory in use");
    case LimitKind::kCpu:
      return absl::StrCat("crossed its CPU limit of ",
                          absl::FormatDuration(limits.cpu_per_task),
                          " per task (PoolOptions::limits.cpu_per_task): the task had used ",
                          absl::FormatDuration(absl::Milliseconds(facts.observed / 1'000'000)),
                          " of CPU");
    case LimitKind::kOpenFiles:
      return absl::StrCat("crossed its limit of ", limits.open_files,
                          " open files (PoolOptions::limits.open_files, RLIMIT_NOFILE): all ",
                          facts.observed, " descriptors were in use");
    case LimitKind::kNone:
      break;
  }
  if (limits.memory_bytes > 0 && facts.oom_kills > 0 && facts.signal == SIGKILL) {
    return absl::StrCat("crossed its memory limit of ", Mib(limits.memory_bytes),
                        " (PoolOptions::limits.memory_bytes, ", memory_mechanism,
                        "): peak ", Mib(facts.cgroup_peak),
                        ", killed by the kernel's OOM killer");
  }
  if (limits.cpu_per_task != absl::InfiniteDuration() && facts.signal == SIGXCPU) {
    // Its handler did not get to record: a task changed the signal's
    // disposition.
    return absl::StrCat("crossed its CPU limit of ", absl::FormatDuration(limits.cpu_per_task),
                        " per task (PoolOptions::limits.cpu_per_task): killed by SIGXCPU");
  }
  return "";
}

// ---------------------------------------------------------------------------
// PoolLimits

absl::StatusOr<std::unique_ptr<PoolLimits>> PoolLimits::Create(const WorkerLimits& limits) {
  const bool cpu = limits.cpu_per_task != absl::InfiniteDuration();
  if (limits.memory_bytes == 0 && !cpu && limits.open_files == 0) return nullptr;
  std::unique_ptr<PoolLimits> p(new PoolLimits());
  p->limits_ = limits;
  std::vector<std::string> parts;
  if (limits.memory_bytes > 0) {
    absl::Status cgroup_error;
    if (limits.memory_mechanism != MemoryLimitMechanism::kRlimit) {
      absl::StatusOr<std::pair<std::string, MemoryCgroup::Version>> own = OwnMemoryCgroup();
      if (own.ok()) {
        absl::StatusOr<std::unique_ptr<MemoryCgroup>> group = MemoryCgroup::Create(
            own->first, own->second,
            absl::StrCat("procpool-", ::getpid(), "-", g_pool_groups.fetch_add(1) + 1), 0);
        if (group.ok()) {
          p->pool_group_ = *std::move(group);
        } else {
          cgroup_error = group.status();
        }
      } else {
        cgroup_error = own.status();
      }
    }
    if (p->pool_group_ != nullptr) {
      p->mechanism_ = MemoryLimitMechanism::kCgroup;
      const bool v1 = p->pool_group_->version() == MemoryCgroup::Version::kV1;
      p->memory_how_ = v1 ? "memory cgroup v1: memory.limit_in_bytes"
                          : "memory cgroup v2: memory.max";
      // Whether swap is limited too shows on the workers' groups; say what
      // the kernel offers.
      const std::string& dir = p->pool_group_->path();
      if (v1 && Exists(dir + "/memory.memsw.limit_in_bytes")) p->memory_how_ += " + memsw";
      if (!v1) p->memory_how_ += ", memory.swap.max 0";
    } else if (limits.memory_mechanism == MemoryLimitMechanism::kCgroup) {
      return absl::FailedPreconditionError(absl::StrCat(
          "PoolOptions::limits.memory_mechanism is kCgroup, but this process cannot make a "
          "memory cgroup: ",
          cgroup_error.message()));
    } else {
      p->mechanism_ = MemoryLimitMechanism::kRlimit;
      p->memory_how_ = "RLIMIT_DATA";
    }
    parts.push_back(absl::StrCat("memory ", Mib(limits.memory_bytes), " (", p->memory_how_, ")"));
  }
  if (cpu) {
    parts.push_back(
        absl::StrCat("CPU ", absl::FormatDuration(limits.cpu_per_task),
                     " per task (a CPU-time timer, SIGXCPU)"));
  }
  if (limits.open_files > 0) {
    parts.push_back(absl::StrCat("open files ", limits.open_files, " (RLIMIT_NOFILE)"));
  }
  p->description_ = absl::StrJoin(parts, ", ");
  return p;
}

absl::StatusOr<std::unique_ptr<MemoryCgroup>> PoolLimits::Attach(uint64_t id, pid_t pid) const {
  if (pool_group_ == nullptr) return nullptr;
  PROCPOOL_ASSIGN_OR_RETURN(
      std::unique_ptr<MemoryCgroup> g,
      MemoryCgroup::Create(pool_group_->path(), pool_group_->version(), absl::StrCat("w", id),
                           limits_.memory_bytes));
  PROCPOOL_RETURN_IF_ERROR(g->AddProcess(pid));
  return g;
}

std::string PoolLimits::Crossing(const WorkerStatusPage& page, int signal,
                                 const MemoryCgroup* group) const {
  LimitFacts facts;
  facts.crossed = static_cast<LimitKind>(page.limit_crossed.load(std::memory_order_acquire));
  facts.observed = page.limit_observed.load(std::memory_order_relaxed);
  facts.signal = signal;
  if (group != nullptr) {
    facts.oom_kills = group->OomKills();
    if (facts.oom_kills > 0) facts.cgroup_peak = group->PeakBytes();
  }
  return DescribeLimitCrossing(limits_, memory_how_, facts);
}

void SetWorkerLimitArgs(const WorkerLimits& limits, WorkerCommand* command) {
  if (limits.memory_mechanism == MemoryLimitMechanism::kRlimit) {
    command->limit_data = limits.memory_bytes;
  }
  if (limits.cpu_per_task != absl::InfiniteDuration()) {
    command->limit_cpu_ms =
        static_cast<uint64_t>(absl::ToInt64Milliseconds(limits.cpu_per_task));
  }
  command->limit_files = limits.open_files;
}

}  // namespace procpool::internal
