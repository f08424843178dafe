// A shared object whose static initialisation dies with SIGSEGV, so the
// worker that dlopen()s it dies before it says hello.
#include <signal.h>

namespace {
struct CrashOnLoad {
  CrashOnLoad() { ::raise(SIGSEGV); }
};
const CrashOnLoad crash;
}  // namespace
