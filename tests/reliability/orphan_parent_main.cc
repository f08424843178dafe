// A parent for ParentDeathTest: starts a pool of 2 workers, keeps both busy
// with tasks that never end, prints "pids <a> <b>" and waits to be killed.

#include <unistd.h>

#include <cstdio>
#include <vector>

#include "plugins/faults/faults.h"
#include "pool/pool.h"
#include "pool/runfiles.h"

int main() {
  procpool::PoolOptions opts;
  opts.max_workers = 2;
  opts.plugins = {*procpool::FindRunfile("plugins/faults/libfaults.so")};
  auto pool = procpool::ProcessPool::Create(opts);
  if (!pool.ok()) {
    std::fprintf(stderr, "%s\n", pool.status().ToString().c_str());
    return 1;
  }
  auto hang = pool->Task(procpool::faults::kHang);
  std::vector<procpool::Future<int>> running = {pool->Submit(*hang, 0),
                                                pool->Submit(*hang, 1)};
  while (pool->Stats().in_flight < 2) ::usleep(1000);
  std::vector<int> pids = pool->WorkerPids();
  std::printf("pids %d %d\n", pids.at(0), pids.at(1));
  std::fflush(stdout);
  while (true) ::pause();
}
