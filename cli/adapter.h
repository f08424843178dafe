// poolrun's worker side: the task "poolrun_batch" of libpoolrun_adapter.so,
// which poolrun loads into every worker next to the user's plugin. For each
// raw record of a batch it parses the record (JSON Lines or plain lines),
// calls the user's task in-process through the plugin ABI (tasks/abi.h),
// and encodes the finished output line, so that poolrun's own process does
// none of that per-record work.
//
// Thread-compatible: a worker runs one task at a time.

#ifndef PROCPOOL_CLI_ADAPTER_H_
#define PROCPOOL_CLI_ADAPTER_H_

#include "cli/batch.h"

namespace procpool::cli {

// Runs every record of `request` (see batch.h). A record that fails (bad
// record, the task threw, over --timeout) is a RecordFailure, never an
// exception. Throws only when the batch as a whole cannot run: the plugin is
// not loaded in this process, has no such task, or its signature is not one
// poolrun can call (std::invalid_argument), or memory ran out.
BatchReply RunBatch(BatchRequest request);

// The task kOpenProgressTaskName: opens the ProgressSlots file at `path`
// for the batches to come, which reuse it when their progress_path is the
// same. Run as the pool's initializer, before the worker is sandboxed.
int OpenProgress(const std::string& path);

}  // namespace procpool::cli

#endif  // PROCPOOL_CLI_ADAPTER_H_
