// The binary contract between a plugin shared object and the worker that
// loads it. Plain C so that it stays stable across compilers and languages;
// plugin authors never use it directly (tasks/task.h fills it in).
//
// A plugin exports exactly one symbol, `procpool_plugin_manifest`, returning
// a pointer to a manifest that lives as long as the shared object is loaded.
// `abi_version` is the first field and stays first forever, so a worker can
// reject a plugin built against another version before reading anything else.

#ifndef PROCPOOL_TASKS_ABI_H_
#define PROCPOOL_TASKS_ABI_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Bumped whenever a struct below changes shape.
#define PROCPOOL_ABI_VERSION 1u

// Name of the entry point a worker looks up with dlsym().
#define PROCPOOL_ENTRY_POINT "procpool_plugin_manifest"

// What `invoke` reports. The bytes handed to `append` mean:
//   PROCPOOL_INVOKE_OK           the cereal binary archive of the result
//   PROCPOOL_INVOKE_BAD_ARGS     a readable message (arguments failed to decode)
//   PROCPOOL_INVOKE_EXCEPTION    cereal archive of (type name, what()) strings
enum {
  PROCPOOL_INVOKE_OK = 0,
  PROCPOOL_INVOKE_BAD_ARGS = 1,
  PROCPOOL_INVOKE_EXCEPTION = 2,
};

// Appends `len` bytes to the output buffer `out`.
typedef void (*procpool_append_fn)(void* out, const char* data, size_t len);

// One task of a plugin, as the worker sees it.
typedef struct procpool_task_v1 {
  const char* name;         // unique within the plugin, e.g. "add"
  uint64_t fingerprint;     // hash of the decayed C++ signature
  const char* signature;    // readable signature, e.g. "int(int, int)"
  void* ctx;                // passed back to invoke
  // Decodes the argument archive, runs the task, appends the outcome.
  // Never throws; returns one of PROCPOOL_INVOKE_*. Reads `args` only until
  // its first call to `append`: from then on the caller may free them (so a
  // huge argument and a huge result need not be held at once).
  int (*invoke)(void* ctx, const char* args, size_t args_len, void* out,
                procpool_append_fn append);
} procpool_task_v1;

// What the entry point returns: everything a worker needs to know about a
// plugin. Lives as long as the shared object is loaded.
typedef struct procpool_manifest_v1 {
  uint32_t abi_version;     // PROCPOOL_ABI_VERSION the plugin was built with
  const char* plugin_name;  // as given to PROCPOOL_PLUGIN
  size_t num_tasks;         // the length of `tasks`
  const procpool_task_v1* tasks;  // in registration order
} procpool_manifest_v1;

// The type of the entry point, procpool_plugin_manifest.
typedef const procpool_manifest_v1* (*procpool_entry_fn)(void);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // PROCPOOL_TASKS_ABI_H_
