// poolrun's main path for JSON Lines and plain lines: records travel to the
// workers raw, in batches, and come back as finished output lines (the
// adapter, cli/adapter.h, does the per-record work there). A batch whose
// worker dies or that fails as a whole is run again one record at a time,
// so only the record at fault is dead-lettered.
//
// Not thread-safe: runs on the thread that runs the job.

#ifndef PROCPOOL_CLI_BATCHED_H_
#define PROCPOOL_CLI_BATCHED_H_

#include <optional>

#include "cli/batch.h"
#include "cli/flags.h"
#include "cli/job.h"
#include "pool/pool.h"

namespace procpool::cli {

// Runs `job` with the pool's adapter task; `config` names the user's task.
// `progress` is the file the workers opened in their initializer
// (config.progress_path is set from it here); without it a crash cannot be
// blamed on one record, and the batch runs again record by record. Returns
// the exit code. Shuts the pool down before the summary.
int RunBatched(ProcessPool& pool, Job& job, const PoolrunOptions& options, BatchJob config,
               std::optional<ProgressSlots> progress);

}  // namespace procpool::cli

#endif  // PROCPOOL_CLI_BATCHED_H_
