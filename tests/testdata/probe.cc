#include "tests/testdata/probe.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <system_error>
#include <vector>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>

namespace procpool::probe {

int Add3(int x, int y, int z) { return x + y + z; }

int AllocateForever(int mib) {
  std::vector<std::unique_ptr<char[]>> blocks;
  const size_t size = static_cast<size_t>(mib) << 20;
  while (true) {
    blocks.emplace_back(new char[size]);
    std::memset(blocks.back().get(), 1, size);  // resident, not just reserved
  }
}

int AllocateMib(int mib) {
  const size_t size = static_cast<size_t>(mib) << 20;
  std::unique_ptr<char[]> block(new char[size]);
  std::memset(block.get(), 1, size);
  return block[size - 1] * mib;
}

int SpinForever(int x) {
  volatile uint64_t n = static_cast<uint64_t>(x);
  while (true) n = n * 6364136223846793005u + 1442695040888963407u;
}

int OpenFilesForever(bool close_all) {
  std::vector<int> fds;
  while (true) {
    const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      fds.push_back(fd);
      continue;
    }
    const int err = errno;
    if (close_all) {
      for (int f : fds) ::close(f);
    }
    throw std::system_error(err, std::generic_category(),
                            "open /dev/null after " + std::to_string(fds.size()) + " files");
  }
}

namespace {

void Announce(const std::string& path) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) throw std::runtime_error("cannot create " + tmp);
  std::fprintf(f, "%d\n", static_cast<int>(::getpid()));
  std::fclose(f);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error("cannot rename " + tmp + " to " + path);
  }
}

}  // namespace

int AnnounceAndHang(const std::string& path) {
  Announce(path);
  while (true) ::pause();
}

__attribute__((no_sanitize("undefined")))
int AnnounceAndSegfaultAfterMs(const std::string& path, int ms) {
  Announce(path);
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  volatile int* p = nullptr;
  *p = ms;
  return ms;
}

int CloseSocketSleepThenDie(int micros) {
  ::close(3);  // the worker's socket (--fd=3)
  std::this_thread::sleep_for(std::chrono::microseconds(micros));
  // SIGKILL: no handler (a sanitizer's SIGSEGV report) stands between the
  // sleep and the exit.
  ::raise(SIGKILL);
  return micros;
}

int CloseFdsAndReturn(int x) {
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  const int max = limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur > 65536
                      ? 65536
                      : static_cast<int>(limit.rlim_cur);
  for (int fd = 3; fd < max; ++fd) ::close(fd);
  return x;
}

__attribute__((no_sanitize("undefined")))
int ForkSleeperThenCrash(const std::string& path, int sleep_ms) {
  const pid_t child = ::fork();
  if (child < 0) throw std::runtime_error("fork failed");
  if (child == 0) {
    Announce(path);
    std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
    ::_exit(0);
  }
  // Crash only once the child is known to hold the descriptors.
  while (::access(path.c_str(), F_OK) != 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  volatile int* p = nullptr;
  *p = sleep_ms;
  return sleep_ms;
}

int PrintToStdout(const std::string& text) {
  std::fprintf(stdout, "%s\n", text.c_str());
  std::fflush(stdout);
  return static_cast<int>(text.size());
}

int StopSelf(int x) {
  ::raise(SIGSTOP);
  return x;
}

int Touch(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot create " + path);
  ::close(fd);
  return 1;
}

int HangIfExists(const std::string& path) {
  if (::access(path.c_str(), F_OK) != 0) return 0;
  while (true) ::pause();
}

std::string EchoUnlessExists(const std::string& s) {
  if (s.find('\0') == std::string::npos) HangIfExists(s);
  return s;
}

namespace {
int remembered = 0;
}  // namespace

int Remember(const std::string& path, int value) {
  remembered = value;
  const std::string line = std::to_string(::getpid()) + "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot open " + path);
  const ssize_t n = ::write(fd, line.data(), line.size());
  ::close(fd);
  if (n != static_cast<ssize_t>(line.size())) throw std::runtime_error("short write");
  return 1;
}

int Remembered(int x) { return remembered + x; }

int StartThread(int x) {
  std::thread([] {
    while (true) std::this_thread::sleep_for(std::chrono::hours(1));
  }).detach();
  return x;
}

}  // namespace procpool::probe
