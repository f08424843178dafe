// poolrun's main job: apply a plugin task to every record of a file.
//
// Thread-compatible: call from the main thread, once per process (it
// installs handlers for SIGINT and SIGTERM).

#ifndef PROCPOOL_CLI_RUN_H_
#define PROCPOOL_CLI_RUN_H_

#include <string>
#include <vector>

namespace procpool::cli {

// Runs poolrun with `args` (argv without argv[0]) and returns the process's
// exit code (see Usage() in flags.h). Blocks until the run ends. Writes
// output records to stdout only, messages and progress to stderr.
int RunPoolrun(const std::vector<std::string>& args);

}  // namespace procpool::cli

#endif  // PROCPOOL_CLI_RUN_H_
