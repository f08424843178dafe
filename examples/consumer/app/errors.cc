// errors: what a caller sees when a task or a plugin goes wrong, one line
// per case (docs/PLUGINS.md quotes this program's output).
//
//   bazel run //app:errors

#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "pool/pool.h"
#include "pool/runfiles.h"
#include "words/words.h"

namespace {

void Show(const char* what, const absl::Status& status) {
  std::printf("%s:\n  %s\n", what, status.ToString().c_str());
}

}  // namespace

int main() {
  absl::StatusOr<std::string> plugin = procpool::FindRunfile("words/libwords.so");
  absl::StatusOr<std::string> future_abi = procpool::FindRunfile("words/libfuture_abi.so");
  if (!plugin.ok() || !future_abi.ok()) {
    std::fprintf(stderr, "errors: %s\n",
                 (plugin.ok() ? future_abi.status() : plugin.status()).ToString().c_str());
    return 1;
  }
  procpool::PoolOptions options;
  options.max_workers = 1;
  options.plugins = {*plugin};
  options.forward_worker_stderr = false;  // keep this program's output to the statuses
  absl::StatusOr<procpool::ProcessPool> pool = procpool::ProcessPool::Create(options);
  if (!pool.ok()) {
    std::fprintf(stderr, "errors: %s\n", pool.status().ToString().c_str());
    return 1;
  }

  // A task that throws: Result() returns the status; Get() throws it as a
  // TaskError, which also names the exception's type.
  procpool::Future<int64_t> bad = pool->Submit(words::kParseCount, std::string("forty-two"));
  Show("a task threw (Result().status())", bad.Result().status());
  try {
    bad.Get();
  } catch (const procpool::TaskError& e) {
    std::printf("  TaskError: exception_type() = %s, exception_what() = %s\n",
                e.exception_type().c_str(), e.exception_what().c_str());
  }

  // Looking a task up with the wrong signature, or a name no plugin has.
  Show("the caller expects another signature",
       pool->Task<int64_t(int64_t)>("parse_count").status());
  Show("no plugin has the task", pool->Task<int64_t(std::string)>("parse_cuont").status());

  // A task that crashes its worker: only that task fails.
  Show("a task crashed its worker",
       pool->Submit(words::kAcronym, std::string("---")).Result().status());

  // A plugin built for another ABI version: Create() fails.
  procpool::PoolOptions old = options;
  old.plugins = {*future_abi};
  Show("a plugin built for another ABI version",
       procpool::ProcessPool::Create(old).status());
  return 0;
}
