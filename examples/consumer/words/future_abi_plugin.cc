// A plugin as a newer procpool would build it: its manifest claims the next
// ABI version. app/errors.cc shows what a pool says when it loads it.
#include "tasks/abi.h"

extern "C" [[gnu::visibility("default")]] const procpool_manifest_v1* procpool_plugin_manifest(
    void) {
  static const procpool_manifest_v1 manifest{PROCPOOL_ABI_VERSION + 1, "future_abi", 0, nullptr};
  return &manifest;
}
