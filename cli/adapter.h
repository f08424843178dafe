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

// The task kOpenFilesTaskName: opens the ProgressSlots file at
// `progress_path` for the batches to come (which reuse it when their
// progress_path is the same) and the input file at `input_path`, from which
// a batch's record is read when its request says so (from_file). Either
// path may be empty. Run as the pool's initializer, before the worker is
// sandboxed. Returns 1 if the progress file opened, plus 2 if the input did.
int OpenFiles(const std::string& progress_path, const std::string& input_path);

}  // namespace procpool::cli

#endif  // PROCPOOL_CLI_ADAPTER_H_
