// libbench_tasks.so: the benchmark-only tasks of bench_tasks.h.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <string>

#include "bench/bench_tasks.h"
#include "tasks/task.h"

namespace procpool::bench {

uint64_t SpinRounds(uint64_t rounds) { return Mix(rounds); }

namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

 private:
  const int fd_;
};

}  // namespace

int Hold(const std::string& dir) {
  const int pid = static_cast<int>(::getpid());
  // -1 with ENOENT (no such FIFO) or ENXIO (nobody reads it): not wanted.
  const Fd alive(::open((dir + "/alive").c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
  int out = ::open((dir + "/pids").c_str(), O_WRONLY | O_CLOEXEC);
  if (out < 0) throw std::runtime_error("hold: cannot open " + dir + "/pids");
  ssize_t w = ::write(out, &pid, sizeof(pid));
  ::close(out);
  if (w != sizeof(pid)) throw std::runtime_error("hold: short write");
  int in = ::open((dir + "/release").c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) throw std::runtime_error("hold: cannot open " + dir + "/release");
  char c;
  ssize_t r;
  do {
    r = ::read(in, &c, 1);
  } while (r < 0 && errno == EINTR);
  ::close(in);
  return pid;
}

int Pid(int) { return static_cast<int>(::getpid()); }

namespace {
const char* tables = nullptr;
size_t tables_bytes = 0;
}  // namespace

int FillTables(int mib) {
  const size_t bytes = static_cast<size_t>(mib) << 20;
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("fill_tables: mmap failed");
  auto* words = static_cast<uint64_t*>(p);
  for (size_t i = 0; i < bytes / sizeof(uint64_t); ++i) words[i] = Mix(i & 7) ^ i;
  ::mprotect(p, bytes, PROT_READ);
  tables = static_cast<const char*>(p);
  tables_bytes = bytes;
  return 1;
}

uint64_t ReadTables(int) {
  uint64_t sum = 0;
  for (size_t i = 0; i < tables_bytes; i += 4096) {
    sum += *reinterpret_cast<const uint64_t*>(tables + i);
  }
  return sum;
}

PROCPOOL_TASK("spin_rounds", SpinRounds);
PROCPOOL_TASK("hold", Hold);
PROCPOOL_TASK("pid", Pid);
PROCPOOL_TASK("fill_tables", FillTables);
PROCPOOL_TASK("read_tables", ReadTables);

}  // namespace procpool::bench

PROCPOOL_PLUGIN("bench_tasks")
