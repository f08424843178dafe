#include "tests/testdata/probe.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>

namespace procpool::probe {

int Add3(int x, int y, int z) { return x + y + z; }

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

}  // namespace procpool::probe
