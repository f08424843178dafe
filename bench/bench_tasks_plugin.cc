// libbench_tasks.so: the benchmark-only tasks of bench_tasks.h.
#include <fcntl.h>
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

PROCPOOL_TASK("spin_rounds", SpinRounds);
PROCPOOL_TASK("hold", Hold);
PROCPOOL_TASK("pid", Pid);

}  // namespace procpool::bench

PROCPOOL_PLUGIN("bench_tasks")
