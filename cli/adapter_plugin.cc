// libpoolrun_adapter.so: the task poolrun loads into its workers (see
// cli/adapter.h).
#include "cli/adapter.h"
#include "tasks/task.h"

PROCPOOL_TASK(procpool::cli::kBatchTaskName, procpool::cli::RunBatch);
PROCPOOL_TASK(procpool::cli::kOpenFilesTaskName, procpool::cli::OpenFiles);
PROCPOOL_PLUGIN("poolrun_adapter");
