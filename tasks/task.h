// Writing tasks: the one header a plugin author includes.
//
// A plugin is a shared object holding ordinary C++ functions registered by
// name. Arguments and results may be any cereal-serializable type (see
// tasks/serialize.h).
//
//   // plugins/math/math_plugin.cc
//   #include "tasks/task.h"
//
//   int Add(int x, int y) { return x + y; }
//   PROCPOOL_TASK("add", Add);
//
//   PROCPOOL_PLUGIN("math");   // exactly once per shared object
//
// Callers get compile-time types by publishing typed references in a header:
//
//   inline constexpr procpool::TaskRef<int(int, int)> kAdd{"add"};
//
// A string argument may be a `std::string_view` instead of a std::string
// (the signature is the same): it then views the worker's copy of the
// arguments in place, with no copy of its own, and is valid until the task
// returns. A huge record is then held once, not twice, while the task runs.
//
// A task may throw anything; the worker catches it at one boundary and the
// caller's future fails with absl::StatusCode::kUnknown carrying the
// exception's type name and what(). A task must not write to the worker's
// protocol socket, leave threads running, or rely on state from earlier
// tasks (a worker may be replaced at any time).
//
// Registration runs during static initialisation of the shared object and is
// not thread-safe; everything after dlopen() is read-only.

#ifndef PROCPOOL_TASKS_TASK_H_
#define PROCPOOL_TASKS_TASK_H_


#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "tasks/abi.h"
#include "tasks/serialize.h"
#include "tasks/signature.h"

namespace procpool {

// A typed name of a task. Cheap to copy; compares nothing until a pool checks
// it against a plugin's manifest (ProcessPool::Task).
template <class Sig>
class TaskRef;

// The task called `name`, taking Args... and returning R. `name` must
// outlive the reference (a string literal does).
template <class R, class... Args>
class TaskRef<R(Args...)> {
 public:
  using Signature = R(Args...);     // the task's signature, as declared
  using Result = std::decay_t<R>;   // what its futures hold

  // Names the task; checks nothing (see ProcessPool::Task).
  constexpr explicit TaskRef(std::string_view name) : name_(name) {}
  // The name the plugin registered the task under.
  constexpr std::string_view name() const { return name_; }

 private:
  std::string_view name_;
};

namespace internal {

// A registered task's body, type-erased behind the C ABI's invoke().
class TaskBody {
 public:
  virtual ~TaskBody() = default;
  virtual int Invoke(const char* args, size_t args_len, void* out,
                     procpool_append_fn append) = 0;
};

struct Registration {
  std::string name;
  uint64_t fingerprint;
  std::string signature;
  std::unique_ptr<TaskBody> body;
};

// The plugin's own registry. Hidden visibility keeps one per shared object
// even when several plugins are loaded into one worker.
[[gnu::visibility("hidden")]] inline std::vector<Registration>& Registry() {
  static std::vector<Registration> registry;
  return registry;
}

// Appends (type name, what) of the exception being handled.
inline void AppendCurrentException(void* out, procpool_append_fn append) {
  ExceptionText e = DescribeCurrentException();
  internal::OutputArchive ar(out, append);
  ar(e.type, e.what);
}

template <class F, class R, class... Args>
class FunctionTask final : public TaskBody {
 public:
  explicit FunctionTask(F fn) : fn_(std::move(fn)) {}

  int Invoke(const char* args, size_t args_len, void* out,
             procpool_append_fn append) override {
    std::tuple<std::decay_t<Args>...> decoded;
    try {
      std::apply(
          [&](auto&... a) {
            internal::DecodeArchiveInto(
                std::string_view(args, args_len), a...);
          },
          decoded);
    } catch (...) {
      std::string message = "arguments do not decode as (";
      message += Signature<R(Args...)>::Readable();
      message += ")";
      try {
        throw;
      } catch (const std::exception& e) {
        message += ": ";
        message += e.what();
      } catch (...) {
      }
      append(out, message.data(), message.size());
      return PROCPOOL_INVOKE_BAD_ARGS;
    }
    // The one boundary where a task's exceptions stop.
    try {
      internal::WriteArchive(out, append, std::apply(fn_, std::move(decoded)));
      return PROCPOOL_INVOKE_OK;
    } catch (...) {
      AppendCurrentException(out, append);
      return PROCPOOL_INVOKE_EXCEPTION;
    }
  }

 private:
  F fn_;
};

template <class T>
struct CallableTraits : CallableTraits<decltype(&T::operator())> {};
template <class R, class... Args>
struct CallableTraits<R (*)(Args...)> {
  using Signature = R(Args...);
};
template <class R, class... Args>
struct CallableTraits<R(Args...)> {
  using Signature = R(Args...);
};
template <class C, class R, class... Args>
struct CallableTraits<R (C::*)(Args...) const> {
  using Signature = R(Args...);
};
template <class C, class R, class... Args>
struct CallableTraits<R (C::*)(Args...)> {
  using Signature = R(Args...);
};

template <class F, class Sig>
struct MakeBody;
template <class F, class R, class... Args>
struct MakeBody<F, R(Args...)> {
  static_assert(!std::is_void_v<R>, "a task must return a value");
  static_assert(!std::is_same_v<std::decay_t<R>, std::string_view>,
                "a task returns a std::string, not a view of memory it does not own");
  static_assert(((!std::is_lvalue_reference_v<Args> ||
                  std::is_const_v<std::remove_reference_t<Args>>) &&
                 ...),
                "task arguments are values or const references");
  static std::unique_ptr<TaskBody> Make(F fn) {
    return std::make_unique<FunctionTask<F, R, Args...>>(std::move(fn));
  }
  static uint64_t Fingerprint() { return Signature<R(Args...)>::Fingerprint(); }
  static std::string Readable() { return Signature<R(Args...)>::Readable(); }
};

// Adds a task to this plugin's registry. Used by PROCPOOL_TASK.
template <class F>
bool Register(const char* name, F fn) {
  using Fn = std::decay_t<F>;
  using Sig = typename CallableTraits<Fn>::Signature;
  using Body = MakeBody<Fn, Sig>;
  Registry().push_back(Registration{name, Body::Fingerprint(),
                                    Body::Readable(), Body::Make(Fn(fn))});
  return true;
}

inline int InvokeTrampoline(void* ctx, const char* args, size_t args_len,
                            void* out, procpool_append_fn append) {
  try {
    return static_cast<TaskBody*>(ctx)->Invoke(args, args_len, out, append);
  } catch (...) {  // e.g. std::bad_alloc while reporting
    AppendCurrentException(out, append);
    return PROCPOOL_INVOKE_EXCEPTION;
  }
}

// Builds the manifest once, from the registry. Used by PROCPOOL_PLUGIN.
[[gnu::visibility("hidden")]] inline const procpool_manifest_v1* Manifest(
    const char* plugin_name) {
  static const std::vector<procpool_task_v1> tasks = [] {
    std::vector<procpool_task_v1> out;
    for (Registration& r : Registry()) {
      out.push_back(procpool_task_v1{r.name.c_str(), r.fingerprint,
                                     r.signature.c_str(), r.body.get(),
                                     &InvokeTrampoline});
    }
    return out;
  }();
  static const procpool_manifest_v1 manifest{PROCPOOL_ABI_VERSION, plugin_name,
                                             tasks.size(), tasks.data()};
  return &manifest;
}

}  // namespace internal
}  // namespace procpool

#define PROCPOOL_INTERNAL_CONCAT2(a, b) a##b
#define PROCPOOL_INTERNAL_CONCAT(a, b) PROCPOOL_INTERNAL_CONCAT2(a, b)

// Registers `fn` (a function, a function pointer or a captureless lambda) as
// the task `name`. Use at namespace scope in a plugin source file.
#define PROCPOOL_TASK(name, fn)                                             \
  [[maybe_unused]] static const bool PROCPOOL_INTERNAL_CONCAT(              \
      procpool_task_registered_, __COUNTER__) =                             \
      ::procpool::internal::Register(name, fn)

// Defines the plugin's entry point. Use exactly once per shared object.
#define PROCPOOL_PLUGIN(plugin_name)                                        \
  extern "C" [[gnu::visibility("default")]] const procpool_manifest_v1*     \
  procpool_plugin_manifest(void) {                                          \
    return ::procpool::internal::Manifest(plugin_name);               \
  }

#endif  // PROCPOOL_TASKS_TASK_H_
