// poolrun: apply a plugin task to every record of a file, in parallel.
// See `poolrun --help` and docs/POOLRUN.md.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/run.h"
#include "pool/tuning.h"

int main(int argc, char** argv) {
  // poolrun is a program of its own, built to push records through a pool:
  // it opts into the pool's process-wide settings, before any thread runs.
  if (absl::Status s = procpool::TuneProcessForThroughput(); !s.ok()) {
    std::fprintf(stderr, "poolrun: %s\n", s.ToString().c_str());
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  return procpool::cli::RunPoolrun(args);
}
