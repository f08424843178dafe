#include "tests/testing/pool_fixture.h"

#include <dirent.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace procpool::testing {

std::string Runfile(std::string_view workspace_path) {
  absl::StatusOr<std::string> path = FindRunfile(workspace_path);
  if (!path.ok()) throw std::runtime_error(path.status().ToString());
  return *path;
}

std::string MathPlugin() { return Runfile("plugins/math/libmath.so"); }
std::string FaultsPlugin() { return Runfile("plugins/faults/libfaults.so"); }
std::string ProbePlugin() { return Runfile("tests/testdata/libprobe.so"); }

std::string TempPath(std::string_view name) {
  static std::atomic<int> counter{0};
  const char* dir = std::getenv("TEST_TMPDIR");
  std::string root = dir != nullptr && *dir != '\0' ? dir : "/tmp";
  return absl::StrCat(root, "/", ::getpid(), "_", counter.fetch_add(1), "_",
                      std::string(name));
}

Watchdog::Watchdog(absl::Duration budget) {
  const ::testing::TestInfo* info =
      ::testing::UnitTest::GetInstance()->current_test_info();
  std::string test =
      info != nullptr ? absl::StrCat(info->test_suite_name(), ".", info->name())
                      : std::string("(outside a test)");
  thread_ = std::thread([this, budget, test] {
    if (done_.WaitForNotificationWithTimeout(budget)) return;
    std::fprintf(stderr,
                 "WATCHDOG: %s still running after %s; something it waits on "
                 "hangs. Ending the test process.\n",
                 test.c_str(), absl::FormatDuration(budget).c_str());
    std::fflush(stderr);
    std::_Exit(3);
  });
}

Watchdog::~Watchdog() {
  done_.Notify();
  thread_.join();
}

bool WaitUntil(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (condition()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
}

std::vector<ChildProcessInfo> ChildProcesses() {
  std::vector<ChildProcessInfo> out;
  const int self = static_cast<int>(::getpid());
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return out;
  while (dirent* e = ::readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(e->d_name, &pid)) continue;
    std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
    std::string stat((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    // pid (comm) state ppid ...; comm may hold spaces and parentheses.
    size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 1));
    char state = '?';
    int ppid = 0;
    if (!(rest >> state >> ppid)) continue;
    if (ppid == self) out.push_back(ChildProcessInfo{pid, state});
  }
  ::closedir(proc);
  return out;
}

std::optional<int> WaitForAnnouncedPid(const std::string& path,
                                       absl::Duration timeout) {
  int pid = 0;
  bool found = WaitUntil(
      [&] {
        std::ifstream in(path);
        return in && (in >> pid) && pid > 0;
      },
      timeout);
  if (!found) return std::nullopt;
  return pid;
}

PoolOptions TestPoolOptions(int workers) {
  PoolOptions options;
  options.max_workers = workers;
  options.plugins = {MathPlugin(), FaultsPlugin(), ProbePlugin()};
  options.start_timeout = kWait;
  return options;
}

void PoolTest::StartPool(PoolOptions options) {
  TerminatePool();
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(std::move(options));
  ASSERT_TRUE(pool.ok()) << pool.status();
  pool_.emplace(*std::move(pool));
}

}  // namespace procpool::testing
