#include "bench/bench_util.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "bench/bench_tasks.h"
#include "pool/runfiles.h"

namespace procpool::bench {

std::string Runfile(const std::string& path) {
  absl::StatusOr<std::string> p = FindRunfile(path);
  if (!p.ok()) {
    std::fprintf(stderr, "%s\n", p.status().ToString().c_str());
    std::abort();
  }
  return *p;
}

PoolOptions BenchPoolOptions(int workers) {
  PoolOptions opts;
  opts.max_workers = workers;
  opts.plugins = {Runfile("plugins/math/libmath.so"),
                  Runfile("bench/libbench_tasks.so")};
  return opts;
}

std::optional<ProcessPool> MakePool(benchmark::State& state, int workers) {
  absl::StatusOr<ProcessPool> pool = ProcessPool::Create(BenchPoolOptions(workers));
  if (!pool.ok()) {
    state.SkipWithError(pool.status().ToString().c_str());
    return std::nullopt;
  }
  return std::move(*pool);
}

double ProcessCpuSeconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

double NowSeconds() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

bool WriteAll(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool ReadAll(int fd, void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

Peer ForkPeer(void (*body)(int fd), size_t sockbuf_bytes) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    std::perror("socketpair");
    std::abort();
  }
  if (sockbuf_bytes > 0) {
    int sz = static_cast<int>(sockbuf_bytes);
    for (int fd : sv) {
      ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    }
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("fork");
    std::abort();
  }
  if (pid == 0) {
    // Keep only our end, as fd 3: a copy of another peer's parent end
    // would keep that peer from ever seeing EOF.
    ::close(sv[0]);
    if (sv[1] != 3) ::dup2(sv[1], 3);
    ::close_range(4, ~0U, 0);
    body(3);
    ::_exit(0);
  }
  ::close(sv[1]);
  return Peer{pid, sv[0]};
}

void ClosePeer(Peer& peer) {
  if (peer.fd >= 0) ::close(peer.fd);
  if (peer.pid > 0) {
    int st;
    while (::waitpid(peer.pid, &st, 0) < 0 && errno == EINTR) {
    }
  }
  peer = Peer{};
}

void EchoPingBody(int fd) {
  uint32_t v;
  while (ReadAll(fd, &v, sizeof(v))) {
    if (!WriteAll(fd, &v, sizeof(v))) return;
  }
}

void EchoFramesBody(int fd) {
  // mmap, not malloc: this is a fork of a process that may have had threads.
  size_t cap = 0;
  void* buf = nullptr;
  uint64_t len;
  while (ReadAll(fd, &len, sizeof(len))) {
    if (len > cap) {
      if (buf != nullptr) ::munmap(buf, cap);
      cap = len;
      buf = ::mmap(nullptr, cap, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (buf == MAP_FAILED) return;
    }
    if (!ReadAll(fd, buf, len)) return;
    if (!WriteAll(fd, &len, sizeof(len)) || !WriteAll(fd, buf, len)) return;
  }
}

void AddRecordsBody(int fd) {
  static constexpr size_t kBuf = 64 << 10;
  alignas(8) char in[kBuf];
  alignas(8) int32_t out[kBuf / 8];
  size_t have = 0;
  while (true) {
    ssize_t r = ::read(fd, in + have, kBuf - have);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return;
    have += static_cast<size_t>(r);
    size_t n = have / 8;
    for (size_t i = 0; i < n; ++i) {
      int32_t xy[2];
      std::memcpy(xy, in + 8 * i, 8);
      out[i] = xy[0] + xy[1];
    }
    if (!WriteAll(fd, out, n * sizeof(int32_t))) return;
    std::memmove(in, in + 8 * n, have - 8 * n);
    have -= 8 * n;
  }
}

void BlockBody(int fd) {
  char c;
  while (::read(fd, &c, 1) != 0) {
  }
}

double MixRoundsPerMicro() {
  static const double rate = [] {
    constexpr uint64_t kRounds = 4'000'000;
    std::vector<double> r;
    for (int i = 0; i < 7; ++i) {
      double t0 = NowSeconds();
      benchmark::DoNotOptimize(Mix(kRounds));
      double t1 = NowSeconds();
      r.push_back(static_cast<double>(kRounds) / ((t1 - t0) * 1e6));
    }
    std::sort(r.begin(), r.end());
    // The fastest runs are the ones nobody else disturbed.
    return r[r.size() - 2];
  }();
  return rate;
}

}  // namespace procpool::bench
