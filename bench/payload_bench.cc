// Payload bandwidth: identity(s) on strings of 1 KiB to 64 MiB, one call
// at a time, 1 worker. Each call moves the payload to the worker and back,
// one direction after the other, so bytes_per_second counts 2 x size per
// call: that is the speed of each direction.
//
// Floors: the same echo over a raw socketpair (8-byte length, payload, and
// back; default socket buffers, and 4 MiB ones, the largest wmem_max here
// allows); the echo through shared memory, either one region mapped once
// and reused (each side copies the payload in and out: 2 copies per
// direction, plus an 8-byte message each way) or a fresh memfd per message
// passed with SCM_RIGHTS (which pays for touching fresh pages every time);
// and memcpy of the payload twice, the bare copying.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "plugins/math/math.h"

namespace procpool::bench {
namespace {

void PayloadSizes(benchmark::internal::Benchmark* b) {
  b->ArgName("bytes");
  for (int64_t s : {int64_t{8}, int64_t{1} << 10, int64_t{64} << 10,
                    int64_t{1} << 20, int64_t{16} << 20, int64_t{64} << 20}) {
    b->Arg(s);
  }
}

void BM_PayloadIdentity(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  auto pool = MakePool(state, 1);
  if (!pool) return;
  auto identity = GetTask(state, *pool, math::kIdentity);
  if (!identity) return;
  const std::string payload(size, 'p');
  // One untimed call: steady state, not the first touch of fresh memory
  // (which costs ~25 us per 4 KiB page on this VM; see PERFORMANCE.md).
  if (pool->Submit(*identity, payload).Get().size() != size) {
    state.SkipWithError("identity returned a different size");
    return;
  }
  for (auto _ : state) {
    Future<std::string> f = pool->Submit(*identity, payload);
    const std::string& back = f.Get();
    if (back.size() != size) {
      state.SkipWithError("identity returned a different size");
      break;
    }
    benchmark::DoNotOptimize(back.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * 2 * static_cast<int64_t>(size));
}
BENCHMARK(BM_PayloadIdentity)->Apply(PayloadSizes)->UseRealTime();

void BM_SocketpairEcho(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  const size_t sockbuf = static_cast<size_t>(state.range(1));
  Peer peer = ForkPeer(EchoFramesBody, sockbuf);
  std::vector<char> out(size, 'p'), in(size);
  auto echo = [&] {
    uint64_t len = size, back = 0;
    return WriteAll(peer.fd, &len, sizeof(len)) && WriteAll(peer.fd, out.data(), size) &&
           ReadAll(peer.fd, &back, sizeof(back)) && back == size &&
           ReadAll(peer.fd, in.data(), back);
  };
  // One untimed echo, so that the child's buffer has been touched.
  bool ok = echo();
  for (auto _ : state) {
    if (!ok || !(ok = echo())) {
      state.SkipWithError("peer gone");
      break;
    }
    benchmark::DoNotOptimize(in.data());
  }
  ClosePeer(peer);
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * 2 * static_cast<int64_t>(size));
}
BENCHMARK(BM_SocketpairEcho)
    ->ArgNames({"bytes", "sockbuf"})
    ->ArgsProduct({{8, 1 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20},
                   {0, 4 << 20}})
    ->UseRealTime();

// ---- Shared-memory floors ----

// Made before the fork, so parent and child share it.
char* g_region = nullptr;
constexpr size_t kRegionBytes = size_t{64} << 20;

// A private buffer in the child (mmap: this is a fork), grown as needed.
char* ChildBuffer(size_t len) {
  static char* buf = nullptr;
  static size_t cap = 0;
  if (len > cap) {
    if (buf != nullptr) ::munmap(buf, cap);
    buf = static_cast<char*>(::mmap(nullptr, len, PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    cap = len;
  }
  return buf;
}

void SharedRegionEchoBody(int fd) {
  uint64_t len;
  while (ReadAll(fd, &len, sizeof(len))) {
    char* buf = ChildBuffer(len);
    std::memcpy(buf, g_region, len);  // the argument, taken out
    std::memcpy(g_region, buf, len);  // the result, put back
    if (!WriteAll(fd, &len, sizeof(len))) return;
  }
}

bool SendFd(int sock, uint64_t len, int fd) {
  iovec iov{&len, sizeof(len)};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof(ctrl);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  return ::sendmsg(sock, &msg, 0) == sizeof(len);
}

int RecvFd(int sock, uint64_t* len) {
  iovec iov{len, sizeof(*len)};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof(ctrl);
  if (::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != sizeof(*len)) return -1;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (c == nullptr || c->cmsg_type != SCM_RIGHTS) return -1;
  int fd;
  std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
  return fd;
}

// A fresh memfd holding a copy of `data`, or -1.
int MemfdWith(const char* data, size_t len) {
  int fd = ::memfd_create("bench-payload", MFD_CLOEXEC);
  if (fd < 0) return -1;
  if (::ftruncate(fd, static_cast<off_t>(len)) != 0) return ::close(fd), -1;
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return ::close(fd), -1;
  std::memcpy(p, data, len);
  ::munmap(p, len);
  return fd;
}

// Copies a memfd's `len` bytes into `out` and closes it.
bool CopyOutOf(int fd, char* out, size_t len) {
  void* p = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return false;
  std::memcpy(out, p, len);
  ::munmap(p, len);
  return true;
}

void FreshMemfdEchoBody(int fd) {
  uint64_t len;
  int in;
  while ((in = RecvFd(fd, &len)) >= 0) {
    char* buf = ChildBuffer(len);
    if (!CopyOutOf(in, buf, len)) return;
    int out = MemfdWith(buf, len);
    if (out < 0 || !SendFd(fd, len, out)) return;
    ::close(out);
  }
}

void BM_SharedMemoryEcho(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  const bool fresh = state.range(1) != 0;
  if (!fresh && g_region == nullptr) {
    void* p = ::mmap(nullptr, kRegionBytes, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      state.SkipWithError("mmap");
      return;
    }
    g_region = static_cast<char*>(p);
    std::memset(g_region, 0, kRegionBytes);
  }
  Peer peer = ForkPeer(fresh ? FreshMemfdEchoBody : SharedRegionEchoBody);
  std::vector<char> out(size, 'p'), in(size);
  auto echo = [&] {
    uint64_t len = size;
    if (fresh) {
      int fd = MemfdWith(out.data(), size);
      bool sent = fd >= 0 && SendFd(peer.fd, len, fd);
      if (fd >= 0) ::close(fd);
      if (!sent) return false;
      int back = RecvFd(peer.fd, &len);
      return back >= 0 && len == size && CopyOutOf(back, in.data(), size);
    }
    std::memcpy(g_region, out.data(), size);
    if (!WriteAll(peer.fd, &len, sizeof(len)) || !ReadAll(peer.fd, &len, sizeof(len))) {
      return false;
    }
    std::memcpy(in.data(), g_region, size);
    return true;
  };
  bool ok = echo();  // untimed: the child's buffer is touched
  for (auto _ : state) {
    if (!ok || !(ok = echo())) {
      state.SkipWithError("peer gone");
      break;
    }
    benchmark::DoNotOptimize(in.data());
  }
  ClosePeer(peer);
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * 2 * static_cast<int64_t>(size));
}
BENCHMARK(BM_SharedMemoryEcho)
    ->ArgNames({"bytes", "fresh_memfd"})
    ->ArgsProduct({{8, 1 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20}, {0}})
    // A fresh memfd runs at the speed of first-touch page faults (about
    // 0.1 GB/s here) at every size from 1 MiB up; 64 MiB would only cost time.
    ->ArgsProduct({{8, 1 << 10, 64 << 10, 1 << 20, 16 << 20}, {1}})
    ->UseRealTime();

void BM_MemcpyTwice(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  std::vector<char> a(size, 'p'), shm(size), b(size);
  for (auto _ : state) {
    std::memcpy(shm.data(), a.data(), size);
    benchmark::ClobberMemory();
    std::memcpy(b.data(), shm.data(), size);
    benchmark::DoNotOptimize(b.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * 2 * static_cast<int64_t>(size));
}
BENCHMARK(BM_MemcpyTwice)->Apply(PayloadSizes);

}  // namespace
}  // namespace procpool::bench
