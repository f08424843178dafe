#include "cli/adapter.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/codec.h"
#include "cli/flags.h"
#include "cli/record.h"
#include "cli/stream_hash.h"
#include "cli/unique_fd.h"
#include "nlohmann/json.hpp"
#include "tasks/abi.h"
#include "tasks/serialize.h"
#include "tasks/signature.h"

namespace procpool::cli {
namespace {

using internal::InputArchive;
using internal::OutputArchive;

void AppendToString(void* out, const char* data, size_t len) {
  static_cast<std::string*>(out)->append(data, len);
}

// ---- Arguments and results, by type ----

bool ParseNumber(std::string_view s, int* v) {
  return absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::string_view(s.data(), s.size())), v);
}
bool ParseNumber(std::string_view s, int64_t* v) {
  return absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::string_view(s.data(), s.size())), v);
}
bool ParseNumber(std::string_view s, double* v) {
  return absl::SimpleAtod(absl::StripAsciiWhitespace(absl::string_view(s.data(), s.size())), v);
}

// Appends argument `s` as a T to the archive, or says why it is not one.
template <class T>
absl::Status SaveArg(OutputArchive& ar, std::string_view s, const std::string& what) {
  if constexpr (std::is_same_v<T, std::string>) {
    // What cereal writes for a std::string, without copying it into one.
    ar(cereal::make_size_tag(static_cast<cereal::size_type>(s.size())));
    ar(cereal::binary_data(s.data(), s.size()));
    return absl::OkStatus();
  } else {
    T v{};
    if (!ParseNumber(s, &v)) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " is not ", std::is_same_v<T, double> ? "a number" : "an integer", ": '",
          std::string(s.substr(0, 80)), "'"));
    }
    ar(v);
    return absl::OkStatus();
  }
}

// Appends the result in `archive`, of type R, to *out: as JSON, or for a
// string result with `as_text`, as the text itself (line breaks as
// spaces). Sets *empty for an empty string result.
template <class R>
void AppendResult(std::string_view archive, bool as_text, std::string* out, bool* empty) {
  InputArchive ar(archive.data(), archive.size());
  if constexpr (std::is_same_v<R, std::string>) {
    cereal::size_type n = 0;
    ar(cereal::make_size_tag(n));
    if (n > ar.remaining()) throw std::length_error("result archive is truncated");
    const std::string_view s = ar.Take(static_cast<size_t>(n));
    *empty = s.empty();
    if (as_text) {
      const size_t at = out->size();
      out->append(s);
      for (size_t i = at; i < out->size(); ++i) {
        if ((*out)[i] == '\n' || (*out)[i] == '\r') (*out)[i] = ' ';
      }
    } else {
      AppendJsonString(out, s);
    }
  } else {
    R r{};
    ar(r);
    out->append(nlohmann::ordered_json(r).dump(-1, ' ', false,
                                               nlohmann::ordered_json::error_handler_t::replace));
  }
}

struct Codec {
  size_t arity;
  // The task takes one std::string: its archive is the string's length
  // (8 bytes) and then its bytes.
  bool one_string;
  // Appends the arguments to *archive; an error for a field of the wrong kind.
  absl::Status (*save_args)(const std::vector<std::string_view>& args,
                            const std::vector<std::string>& fields, std::string* archive);
  void (*append_result)(std::string_view archive, bool as_text, std::string* out, bool* empty);
};

template <class R, class... A>
std::pair<std::string, Codec> Entry() {
  Codec c;
  c.arity = sizeof...(A);
  c.one_string = sizeof...(A) == 1 && (std::is_same_v<A, std::string> && ...);
  c.save_args = [](const std::vector<std::string_view>& args,
                   const std::vector<std::string>& fields, std::string* archive) {
    OutputArchive ar(archive, &AppendToString);
    absl::Status s;
    size_t k = 0;
    auto one = [&](auto tag) {
      using T = decltype(tag);
      if (s.ok()) {
        s = SaveArg<T>(ar, args[k],
                       fields.empty() ? std::string("the record") : "field '" + fields[k] + "'");
      }
      ++k;
    };
    (one(A{}), ...);
    return s;
  };
  c.append_result = &AppendResult<R>;
  return {Signature<R(A...)>::Readable(), c};
}

template <class R>
void AddResult(std::map<std::string, Codec>* m) {
  using S = std::string;
  m->insert(Entry<R, S>());
  m->insert(Entry<R, S, S>());
  m->insert(Entry<R, S, S, S>());
  m->insert(Entry<R, int>());
  m->insert(Entry<R, int64_t>());
  m->insert(Entry<R, double>());
}

// Every signature poolrun can call (the same list as cli/typed.h's).
const std::map<std::string, Codec>& Codecs() {
  static const auto* codecs = [] {
    auto* m = new std::map<std::string, Codec>();
    AddResult<std::string>(m);
    AddResult<bool>(m);
    AddResult<int>(m);
    AddResult<int64_t>(m);
    AddResult<uint64_t>(m);
    AddResult<double>(m);
    AddResult<std::vector<std::string>>(m);
    AddResult<std::vector<int>>(m);
    AddResult<std::vector<int64_t>>(m);
    AddResult<std::vector<double>>(m);
    return m;
  }();
  return *codecs;
}

// ---- The user's task ----

struct Target {
  std::string plugin;
  std::string task;
  const procpool_task_v1* entry = nullptr;
  const Codec* codec = nullptr;
};

// The task `job` names, in the plugin this worker has loaded already.
const Target& Resolve(const BatchJob& job) {
  static Target* cached = new Target();
  if (cached->entry != nullptr && cached->plugin == job.plugin && cached->task == job.task) {
    return *cached;
  }
  // The worker loaded the plugin already: this only finds it (the handle
  // is kept, so the plugin stays loaded as long as this process).
  void* handle = ::dlopen(job.plugin.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* err = ::dlerror();
    throw std::invalid_argument(absl::StrCat("cannot open plugin ", job.plugin, ": ",
                                             err != nullptr ? err : "dlopen failed"));
  }
  auto entry_point = reinterpret_cast<procpool_entry_fn>(::dlsym(handle, PROCPOOL_ENTRY_POINT));
  if (entry_point == nullptr) {
    throw std::invalid_argument(absl::StrCat(job.plugin, " is not a procpool plugin"));
  }
  const procpool_manifest_v1* m = entry_point();
  const procpool_task_v1* found = nullptr;
  for (size_t i = 0; m != nullptr && i < m->num_tasks; ++i) {
    if (job.task == m->tasks[i].name) found = &m->tasks[i];
  }
  if (found == nullptr) {
    throw std::invalid_argument(absl::StrCat(job.plugin, " has no task '", job.task, "'"));
  }
  auto codec = Codecs().find(found->signature);
  if (codec == Codecs().end() || found->signature != job.signature) {
    throw std::invalid_argument(absl::StrCat("task '", job.task, "' has the signature ",
                                             found->signature, ", which poolrun cannot call"));
  }
  *cached = Target{job.plugin, job.task, found, &codec->second};
  return *cached;
}

// Makes *arg (a string argument) the archive of itself, in place: its
// length goes in front of its bytes, which move up by 8 bytes within the
// string's own memory when it has room (it then holds one copy of a huge
// field, not two).
void MakeStringArchive(std::string* arg) {
  const uint64_t n = arg->size();
  arg->insert(0, sizeof(n), '\0');
  std::memcpy(arg->data(), &n, sizeof(n));
}

// Buffers this large are given back to the system when freed.
constexpr size_t kTrimBytes = size_t{16} << 20;

// Frees the memory of a buffer that grew large for one record.
void ReleaseIfLarge(std::string* s) {
  const size_t capacity = s->capacity();
  if (capacity <= (size_t{1} << 20)) return;
  std::string().swap(*s);
  // The pool keeps freed memory in workers for reuse (no mmap, no trim:
  // pool/internal/malloc_tuning.h), so the freed pages of a huge buffer
  // would stay resident, and the next huge buffer would not always land on
  // them. Give them back: once a record, for records this large.
  if (capacity >= kTrimBytes) ::malloc_trim(0);
}

// Where a task's outcome goes: appended to *out. A plugin's invoke reads its
// arguments no more once it appends (tasks/abi.h), so the first append frees
// a large argument archive: a huge record's field is then gone before its
// result is copied out of the task.
struct OutcomeSink {
  std::string* out;
  std::string* args;  // freed at the first append

  static void Append(void* p, const char* data, size_t len) {
    auto* s = static_cast<OutcomeSink*>(p);
    if (s->args != nullptr) {
      ReleaseIfLarge(s->args);
      s->args = nullptr;
    }
    s->out->append(data, len);
  }
};

// The (type name, what) archive of a task's exception, as a message.
std::string ExceptionMessage(const std::string& task, std::string_view archive) {
  std::string type, what;
  try {
    InputArchive ar(archive.data(), archive.size());
    ar(type, what);
  } catch (...) {
    type = "an exception";
  }
  return absl::StrCat("task '", task, "' raised ", type, ": ", what);
}

std::optional<ProgressSlots>& Progress(const std::string& path) {
  static auto* slots = new std::optional<ProgressSlots>();
  static auto* opened = new std::string();
  if (path != *opened) {
    slots->reset();
    *opened = path;
    if (!path.empty()) {
      absl::StatusOr<ProgressSlots> s = ProgressSlots::Open(path);
      if (s.ok()) slots->emplace(*std::move(s));
    }
  }
  return *slots;
}

// The input file OpenFiles opened (invalid: none), and its path for
// messages.
struct InputFile {
  UniqueFd fd;
  std::string path;
};
InputFile& Input() {
  static auto* input = new InputFile();
  return *input;
}

// The bytes of `span` read from the input file into *out and its records
// as views of them into *records, checked against the hash poolrun took
// of them. kDataLoss when the file no longer holds them (changed or cut
// since poolrun read it), or the span is malformed.
absl::Status ReadFromInput(const FileSpan& span, std::string* out,
                           std::vector<std::string_view>* records) {
  const InputFile& input = Input();
  if (input.fd.get() < 0) {
    return absl::FailedPreconditionError(
        "the worker has no input file open to read a record from (its initializer "
        "did not open it)");
  }
  if (span.starts.size() != span.lengths.size()) {
    return absl::DataLossError("a file span with unmatched record starts and lengths");
  }
  out->resize(span.length);
  uint64_t done = 0;
  while (done < span.length) {
    const ssize_t n = ::pread(input.fd.get(), out->data() + done, span.length - done,
                              static_cast<off_t>(span.offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::UnavailableError(absl::StrCat("read ", input.path, ": ", std::strerror(errno)));
    }
    if (n == 0) break;
    done += static_cast<uint64_t>(n);
  }
  records->clear();
  StreamHash hash;
  bool fits = done == span.length;
  for (size_t k = 0; fits && k < span.starts.size(); ++k) {
    fits = span.starts[k] <= done && span.lengths[k] <= done - span.starts[k];
    if (!fits) break;
    records->emplace_back(out->data() + span.starts[k], span.lengths[k]);
    hash.Update(records->back());
  }
  if (!fits || hash.Value() != span.hash) {
    records->clear();
    return absl::DataLossError(absl::StrCat(
        "the input file ", input.path, " changed while poolrun ran: bytes ", span.offset,
        " to ", span.offset + span.length, " no longer read as they did"));
  }
  return absl::OkStatus();
}

// A one-shot ITIMER_REAL for `ns` (none for 0); disarmed when done.
class Alarm {
 public:
  explicit Alarm(int64_t ns) : armed_(ns > 0) {
    if (!armed_) return;
    struct itimerval t {};
    t.it_value.tv_sec = static_cast<time_t>(ns / 1000000000);
    t.it_value.tv_usec = static_cast<suseconds_t>((ns % 1000000000) / 1000);
    if (t.it_value.tv_sec == 0 && t.it_value.tv_usec == 0) t.it_value.tv_usec = 1;
    ::setitimer(ITIMER_REAL, &t, nullptr);
  }
  ~Alarm() { Disarm(); }
  void Disarm() {
    if (!armed_) return;
    struct itimerval t {};
    ::setitimer(ITIMER_REAL, &t, nullptr);
    armed_ = false;
  }

 private:
  bool armed_;
};

}  // namespace

int OpenFiles(const std::string& progress_path, const std::string& input_path) {
  int opened = Progress(progress_path).has_value() ? 1 : 0;
  InputFile& input = Input();
  input.fd = input_path.empty() ? UniqueFd()
                                : UniqueFd(::open(input_path.c_str(), O_RDONLY | O_CLOEXEC));
  input.path = input_path;
  if (input.fd.get() >= 0) opened |= 2;
  return opened;
}

BatchReply RunBatch(BatchRequest request) {
  const auto batch_start = std::chrono::steady_clock::now();
  const BatchJob& job = request.job;
  const Target& target = Resolve(job);
  std::optional<ProgressSlots>& progress = Progress(job.progress_path);
  const bool jsonl = job.format == static_cast<int32_t>(Format::kJsonl);
  const bool as_text = !jsonl;
  std::string key_json;
  AppendJsonString(&key_json, job.as);

  // The records: in a worker, read in place from the request (which stays
  // in memory while this task runs), so that none is copied whole.
  std::vector<std::string_view> records = std::move(request.received);
  if (records.empty()) records.assign(request.records.begin(), request.records.end());
  BatchReply reply;
  // Records poolrun left this worker to read from the input: read once; a
  // batch of one (a huge record) lets them go once its argument is made.
  std::string from_file;
  if (request.from_file.length > 0) {
    if (absl::Status s = ReadFromInput(request.from_file, &from_file, &records); !s.ok()) {
      reply.unread = s.ToString();
      return reply;
    }
  }

  size_t input_bytes = 0;
  for (std::string_view r : records) input_bytes += r.size();
  // (Memory reserved and not written to costs no resident pages.)
  reply.output.reserve(input_bytes / 2 + 64 * records.size());
  std::string args;
  std::string result;
  std::string result_json;
  std::vector<std::string_view> views;
  for (size_t i = 0; i < records.size(); ++i) {
    if (progress.has_value()) {
      progress->Set(request.seq, static_cast<uint32_t>(i), ProgressSlots::NowNs());
    }
    const auto start = std::chrono::steady_clock::now();
    auto fail = [&](absl::StatusCode code, std::string message) {
      reply.failures.push_back(
          RecordFailure{static_cast<uint32_t>(i), static_cast<int32_t>(code), std::move(message)});
    };
    const std::string_view raw = records[i];
    Record rec;
    views.clear();
    if (jsonl) {
      ParseJsonlRecord(raw, job.fields, job.as, job.max_depth, &rec);
      if (!rec.error.ok()) {
        fail(rec.error.code(), std::string(rec.error.message()));
        continue;
      }
      for (const std::string& a : rec.args) views.push_back(a);
    } else {
      views.push_back(raw);
    }
    if (views.size() != target.codec->arity) {
      fail(absl::StatusCode::kInvalidArgument,
           absl::StrCat("the task takes ", target.codec->arity, " arguments, the record gives ",
                        views.size()));
      continue;
    }
    if (jsonl && target.codec->one_string) {
      // The field parsed out of the record becomes the archive itself.
      args = std::move(rec.args[0]);
      MakeStringArchive(&args);
    } else {
      args.clear();
      if (absl::Status s = target.codec->save_args(views, job.fields, &args); !s.ok()) {
        fail(s.code(), std::string(s.message()));
        continue;
      }
    }
    // The archive holds the arguments now; and poolrun, which has the
    // record, splices the result into an object itself. Only a record
    // whose output line is rebuilt here is copied (rare: not an object, or
    // one that has the result's key already).
    const bool splice = jsonl && !job.result_only && rec.json_object && !rec.has_result_key;
    std::vector<std::string>().swap(rec.args);
    if (jsonl && !splice && !job.result_only) rec.raw.assign(raw);
    if (records.size() == 1) ReleaseIfLarge(&from_file);  // `raw` is not read from here on
    result.clear();
    // --timeout: SIGALRM's default action ends the worker if the task runs
    // past it; poolrun learns from the progress slot which record it was.
    Alarm alarm(job.timeout_ns);
    OutcomeSink sink{&result, &args};
    const int rc = target.entry->invoke(target.entry->ctx, args.data(), args.size(), &sink,
                                        &OutcomeSink::Append);
    alarm.Disarm();
    ReleaseIfLarge(&args);
    // The task's own buffers (a huge result) are freed now too.
    if (result.size() >= kTrimBytes) ::malloc_trim(0);
    if (rc == PROCPOOL_INVOKE_BAD_ARGS) {
      fail(absl::StatusCode::kInvalidArgument, result);
      continue;
    }
    if (rc != PROCPOOL_INVOKE_OK) {
      fail(absl::StatusCode::kUnknown, ExceptionMessage(job.task, result));
      continue;
    }
    const auto elapsed = std::chrono::steady_clock::now() - start;
    if (job.timeout_ns > 0 && elapsed > std::chrono::nanoseconds(job.timeout_ns)) {
      fail(absl::StatusCode::kResourceExhausted,
           absl::StrCat("the record ran for ",
                        std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count(),
                        " ms, longer than --timeout"));
      continue;
    }
    bool empty = false;
    const size_t at = reply.output.size();
    if (splice) {
      target.codec->append_result(result, false, &reply.output, &empty);
    } else if (jsonl) {
      result_json.clear();
      target.codec->append_result(result, false, &result_json, &empty);
      AppendJsonlOutput(rec, result_json, job.as, key_json, job.result_only, &reply.output);
    } else {
      target.codec->append_result(result, as_text, &reply.output, &empty);
      reply.output.push_back('\n');
    }
    ReleaseIfLarge(&result);
    reply.lengths.push_back(reply.output.size() - at);
    reply.splice.push_back(splice ? 1 : 0);
    if (empty) ++reply.empty_results;
  }
  ReleaseIfLarge(&result);
  reply.busy_ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                            std::chrono::steady_clock::now() - batch_start)
                                            .count());
  return reply;
}

}  // namespace procpool::cli
