#include "plugins/faults/faults.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <thread>

namespace procpool::faults {

int Throw(const std::string& message) { throw std::runtime_error(message); }

int CheckNonNegative(int x) {
  if (x < 0) throw std::invalid_argument("negative input: " + std::to_string(x));
  return x;
}

int ThrowInt(int x) { throw x; }

int Abort(int) { std::abort(); }

int Segfault(int x) {
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

}  // namespace procpool::faults
