// poolrun's main path for JSON Lines and plain lines: records travel to the
// workers raw, in batches, and come back as finished output lines (the
// adapter, cli/adapter.h, does the per-record work there). A batch whose
// worker dies or that fails as a whole is run again one record at a time,
// so only the record at fault is dead-lettered.
//
// Not thread-safe: runs on the thread that runs the job.

#ifndef PROCPOOL_CLI_BATCHED_H_
#define PROCPOOL_CLI_BATCHED_H_

#include "cli/batch.h"
#include "cli/flags.h"
#include "cli/job.h"
#include "pool/pool.h"

namespace procpool::cli {

// Runs `job` with the pool's adapter task; `config` names the user's task
// (progress_path is filled in here). Returns the exit code. Shuts the pool
// down before the summary.
int RunBatched(ProcessPool& pool, Job& job, const PoolrunOptions& options, BatchJob config);

}  // namespace procpool::cli

#endif  // PROCPOOL_CLI_BATCHED_H_
