#include "cli/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/io.h"
#include "nlohmann/json.hpp"

namespace procpool::cli {

DoneSet DoneSet::FromParts(uint64_t prefix, const std::vector<uint64_t>& beyond) {
  DoneSet d;
  d.prefix_ = prefix;
  for (uint64_t n : beyond) d.Add(n);
  return d;
}

void DoneSet::Add(uint64_t n) {
  if (n < prefix_) return;
  if (n == prefix_) {
    ++prefix_;
    while (!beyond_.empty() && *beyond_.begin() == prefix_) {
      beyond_.erase(beyond_.begin());
      ++prefix_;
    }
    return;
  }
  beyond_.insert(n);
}

absl::StatusOr<std::optional<Checkpoint>> LoadCheckpoint(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return std::optional<Checkpoint>();
    return ErrnoStatus(absl::StrCat("checkpoint ", path), errno);
  }
  std::string text;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(absl::StrCat("read checkpoint ", path), errno);
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    Checkpoint c;
    c.run = j.at("run").get<std::string>();
    const uint64_t prefix = j.at("done_prefix").get<uint64_t>();
    c.done = DoneSet::FromParts(prefix, j.at("done_beyond").get<std::vector<uint64_t>>());
    c.output_bytes = j.at("output_bytes").get<uint64_t>();
    c.errors_bytes = j.at("errors_bytes").get<uint64_t>();
    c.succeeded = j.at("succeeded").get<uint64_t>();
    c.failed = j.at("failed").get<uint64_t>();
    c.complete = j.at("complete").get<bool>();
    return std::optional<Checkpoint>(std::move(c));
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat("checkpoint ", path, " is damaged: ", e.what(),
                                            "; run without --resume to start over"));
  }
}

absl::Status SaveCheckpoint(const std::string& path, const Checkpoint& c) {
  nlohmann::json j;
  j["version"] = 1;
  j["run"] = c.run;
  j["done_prefix"] = c.done.prefix();
  j["done_beyond"] = std::vector<uint64_t>(c.done.beyond().begin(), c.done.beyond().end());
  j["output_bytes"] = c.output_bytes;
  j["errors_bytes"] = c.errors_bytes;
  j["succeeded"] = c.succeeded;
  j["failed"] = c.failed;
  j["complete"] = c.complete;
  const std::string text = j.dump() + "\n";

  const std::string tmp = path + ".tmp";
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0) return ErrnoStatus(absl::StrCat("checkpoint ", tmp), errno);
    size_t done = 0;
    while (done < text.size()) {
      ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoStatus(absl::StrCat("write checkpoint ", tmp), errno);
      done += static_cast<size_t>(n);
    }
    if (::fsync(fd.get()) != 0) return ErrnoStatus(absl::StrCat("fsync ", tmp), errno);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return ErrnoStatus(absl::StrCat("rename ", tmp, " to ", path), errno);
  }
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() >= 0) (void)::fsync(dfd.get());
  return absl::OkStatus();
}

}  // namespace procpool::cli
