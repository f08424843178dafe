#include "plugins/faults/faults.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <thread>
#include <vector>

namespace procpool::faults {

int Throw(const std::string& message) { throw std::runtime_error(message); }

int CheckNonNegative(int x) {
  if (x < 0) throw std::invalid_argument("negative input: " + std::to_string(x));
  return x;
}

int ThrowInt(int x) { throw x; }

int Abort(int) { std::abort(); }

// A real invalid write, which UBSan (in the asan config) must not turn into
// its own report: the point is the signal.
__attribute__((no_sanitize("undefined"))) int Segfault(int x) {
  volatile int* p = nullptr;
  *p = x;
  return x;
}

int Exit(int code) { ::_exit(code); }

int SleepMs(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

int Hang(int) {
  while (true) ::pause();
}

std::string Huge(int64_t bytes) { return std::string(static_cast<size_t>(bytes), 'x'); }

int CrashOn(int x, int crash_on) {
  if (x == crash_on) return Segfault(x);
  return x;
}

int Chatter(int x) {
  std::fprintf(stderr, "chatter: working on %d\n", x);
  return x;
}

int Pid(int) { return static_cast<int>(::getpid()); }

namespace {
std::vector<std::string>& Hoard() {
  static std::vector<std::string> hoard;
  return hoard;
}
std::string& Marker() {
  static std::string marker;
  return marker;
}
}  // namespace

int ChatterThenCrash(int lines) {
  for (int i = 1; i <= lines; ++i) std::fprintf(stderr, "chatter line %d\n", i);
  std::fflush(stderr);
  return Segfault(lines);
}

int Scribble(int x) {
  const char garbage[] = "this is not a procpool frame, not even close";
  ssize_t r = ::write(3, garbage, sizeof(garbage));
  (void)r;
  return x;
}

int Hog(int mib) {
  for (int i = 0; i < mib; ++i) Hoard().emplace_back(size_t{1} << 20, 'h');
  return static_cast<int>(Hoard().size());
}

int CrashFirstTime(const std::string& path) {
  int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) return 1;  // a previous run created it
  ::close(fd);
  return Segfault(0);
}

int SetMarker(const std::string& value) {
  if (value == "fail") throw std::runtime_error("initializer refused: fail");
  Marker() = value;
  return 0;
}

std::string GetMarker(int) { return Marker(); }

}  // namespace procpool::faults
