// The call loop of procpool_worker: runs the calls the pool sends, one at a
// time in arrival order, and answers them (the protocol is in wire.h; the
// process around it in worker_main.cc).
//
// Before each call the worker claims it in the claim table that follows its
// status page (claim_table.h): a call the pool cancelled or took back
// meanwhile is answered kSkipped. Before each task (and each item of a
// chunk) it publishes what it runs and since when in the status page. Large
// arguments are read in place from the call region, large answers written
// to shared memory (payload_region.h). With --max-tasks or --max-rss it
// retires (records why, sends its results, returns 0).

#ifndef PROCPOOL_POOL_INTERNAL_WORKER_LOOP_H_
#define PROCPOOL_POOL_INTERNAL_WORKER_LOOP_H_

#include "pool/internal/plugin_loader.h"
#include "pool/internal/shared_memory.h"
#include "pool/internal/unique_fd.h"
#include "pool/internal/worker_command.h"

namespace procpool::internal {

// Serves calls on `sock` until the pool closes it (returns 0), the worker
// retires (0) or the protocol breaks (2, said on stderr). `status` is the
// status page and claim table; `statm` is /proc/self/statm, opened before
// the sandbox (invalid without --max-rss). Blocks; runs on the calling
// thread.
int ServeCalls(UniqueFd sock, SharedMemory status, PluginSet plugins, const WorkerCommand& args,
               UniqueFd statm);

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_WORKER_LOOP_H_
