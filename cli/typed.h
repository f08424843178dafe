// The typed glue between a Job and the pool's lazy maps: one instantiation
// per task signature poolrun supports (see SupportedTasks()).
//
// Not thread-safe: used by the thread that runs the job.

#ifndef PROCPOOL_CLI_TYPED_H_
#define PROCPOOL_CLI_TYPED_H_

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/flags.h"
#include "cli/format.h"
#include "cli/job.h"
#include "pool/pool.h"
#include "tasks/signature.h"

namespace procpool::cli {

// Runs the job with the task of this signature; returns the exit code.
using Runner = int (*)(ProcessPool& pool, Job& job, const PoolrunOptions& options);

struct SupportedTask {
  std::string signature;  // as ProcessPool::Tasks() spells it
  size_t arity;
  Runner run;
};

// Every signature poolrun can call.
const std::vector<SupportedTask>& SupportedTasks();

namespace typed_internal {

inline bool ParseArg(const std::string& s, std::string* out) {
  *out = s;
  return true;
}
inline bool ParseArg(const std::string& s, int* out) {
  return absl::SimpleAtoi(absl::StripAsciiWhitespace(s), out);
}
inline bool ParseArg(const std::string& s, int64_t* out) {
  return absl::SimpleAtoi(absl::StripAsciiWhitespace(s), out);
}
inline bool ParseArg(const std::string& s, double* out) {
  return absl::SimpleAtod(absl::StripAsciiWhitespace(s), out);
}

template <class T>
const char* KindName() {
  if constexpr (std::is_same_v<T, double>) {
    return "a number";
  } else {
    return "an integer";
  }
}

// The k-th argument of each record, as an input range the pool's map reads.
// All K ranges of a map share the job; the first one's increment hands the
// record to the map (the map dereferences every range before incrementing
// any).
template <class T>
class ArgRange {
 public:
  ArgRange(Job* job, size_t k) : job_(job), k_(k) {}

  class iterator {
   public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;

    iterator() = default;
    iterator(Job* job, size_t k) : job_(job), k_(k) {}

    T operator*() const {
      T v{};
      ParseArg(job_->Current().args[k_], &v);  // checked by the validator
      return v;
    }
    iterator& operator++() {
      if (k_ == 0) job_->Submitted();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) {
      return it.job_->AtEnd();
    }

   private:
    Job* job_ = nullptr;
    size_t k_ = 0;
  };

  iterator begin() { return iterator(job_, k_); }
  std::default_sentinel_t end() const { return {}; }

 private:
  Job* job_;
  size_t k_;
};

template <class R, class... A, size_t... K>
void RunMap(ProcessPool& pool, const TaskHandle<R(A...)>& task, Job& job,
            const PoolrunOptions& o, std::index_sequence<K...>) {
  MapOptions mo;
  mo.window = o.window > 0 ? o.window : job.SuggestWindow(pool.num_workers());
  mo.chunksize = o.chunksize;
  mo.task_timeout = o.timeout;
  mo.retries = o.retries;
  std::tuple<ArgRange<A>...> ranges{ArgRange<A>(&job, K)...};
  auto to_json = [](const absl::StatusOr<R>& r) -> absl::StatusOr<Json> {
    if (!r.ok()) return r.status();
    return Json(*r);
  };
  if (o.unordered) {
    auto results = pool.MapUnordered(mo, task, std::get<K>(ranges)...);
    for (const auto& item : results) {
      job.Complete(item.index, to_json(item.result));
      job.Tick();
    }
  } else {
    auto results = pool.TryMap(mo, task, std::get<K>(ranges)...);
    uint64_t i = 0;
    for (const absl::StatusOr<R>& r : results) {
      job.Complete(i++, to_json(r));
      job.Tick();
    }
  }
}

template <class R, class... A>
int Run(ProcessPool& pool, Job& job, const PoolrunOptions& o) {
  absl::StatusOr<TaskHandle<R(A...)>> task = pool.Task<R(A...)>(o.task);
  if (!task.ok()) {
    std::fprintf(stderr, "poolrun: %s\n", task.status().ToString().c_str());
    return kExitUsage;
  }
  if constexpr (!(std::is_same_v<A, std::string> && ...)) {
    job.set_validator([fields = o.fields](const Record& r) -> absl::Status {
      absl::Status s;
      size_t k = 0;
      auto check = [&](auto tag) {
        using T = decltype(tag);
        T v{};
        if (s.ok() && !ParseArg(r.args[k], &v)) {
          s = absl::InvalidArgumentError(absl::StrCat(
              fields.empty() ? std::string("the record") : "field '" + fields[k] + "'",
              " is not ", KindName<T>(), ": '", r.args[k].substr(0, 80), "'"));
        }
        ++k;
      };
      (check(A{}), ...);
      return s;
    });
  }
  if (absl::Status s = job.Begin(); !s.ok()) {
    std::fprintf(stderr, "poolrun: %s\n", s.ToString().c_str());
    return kExitIo;
  }
  RunMap(pool, *task, job, o, std::index_sequence_for<A...>{});
  pool.Shutdown(/*wait=*/true);  // reaps the workers: their CPU time is in the summary
  return job.Finish();
}

template <class R, class... A>
SupportedTask Entry() {
  return SupportedTask{Signature<R(A...)>::Readable(), sizeof...(A), &Run<R, A...>};
}

}  // namespace typed_internal

// Defined in typed_strings.cc and typed_numbers.cc (split to compile in
// parallel).
void AddStringArgTasks(std::vector<SupportedTask>* out);
void AddNumberArgTasks(std::vector<SupportedTask>* out);

}  // namespace procpool::cli

#endif  // PROCPOOL_CLI_TYPED_H_
