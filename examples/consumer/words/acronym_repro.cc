// acronym_repro LINE: runs the acronym task's function on LINE, in this
// process, and prints the result. Under gdb, a crash stops here with the
// whole stack instead of killing a worker process.
#include <cstdio>
#include <string>

#include "words/words.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: acronym_repro LINE\n");
    return 2;
  }
  std::printf("%s\n", words::Acronym(argv[1]).c_str());
  return 0;
}
