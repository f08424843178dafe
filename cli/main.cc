// poolrun: apply a plugin task to every record of a file, in parallel.
// See `poolrun --help` and docs/POOLRUN.md.
#include <string>
#include <vector>

#include "cli/run.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return procpool::cli::RunPoolrun(args);
}
