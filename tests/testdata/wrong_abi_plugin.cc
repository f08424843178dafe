// A plugin built "for another ABI version": its manifest's abi_version is not
// PROCPOOL_ABI_VERSION. A worker must reject it before reading the rest.
#include "tasks/abi.h"

namespace {
const procpool_manifest_v1 kManifest = {PROCPOOL_ABI_VERSION + 41, "wrong_abi",
                                        0, nullptr};
}  // namespace

extern "C" [[gnu::visibility("default")]] const procpool_manifest_v1*
procpool_plugin_manifest(void) {
  return &kManifest;
}
