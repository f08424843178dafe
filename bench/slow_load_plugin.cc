// libslow_load.so: a plugin that takes 300 ms to load (its static
// initializer sleeps, standing for a model or dictionary read at load
// time). Its one task says which process ran it.
#include <unistd.h>

#include <chrono>
#include <thread>

#include "tasks/task.h"

namespace procpool::bench {
namespace {

const bool loaded = [] {
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  return true;
}();

int SlowPluginPid(int) { return loaded ? static_cast<int>(::getpid()) : 0; }

}  // namespace

PROCPOOL_TASK("slow_plugin_pid", SlowPluginPid);

}  // namespace procpool::bench

PROCPOOL_PLUGIN("slow_load")
