#include "cli/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

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

InputIdentity IdentifyInput(const std::string& path) {
  InputIdentity id;
  struct stat st {};
  if (path == "-" || ::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return id;
  id.regular_file = true;
  id.device = static_cast<uint64_t>(st.st_dev);
  id.inode = static_cast<uint64_t>(st.st_ino);
  id.size = static_cast<uint64_t>(st.st_size);
  id.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  return id;
}

absl::StatusOr<std::string> InputChange(const std::string& path, const InputIdentity& made) {
  const InputIdentity now = IdentifyInput(path);
  if (!made.regular_file || !now.regular_file) return std::string();  // checked while read
  if (now.device == made.device && now.inode == made.inode && now.size == made.size &&
      now.mtime_ns == made.mtime_ns) {
    return std::string();
  }
  std::string what;
  if (now.device != made.device || now.inode != made.inode) what = "it is another file";
  if (now.size != made.size) {
    if (!what.empty()) what += ", ";
    absl::StrAppend(&what, "its size is ", now.size, " bytes, was ", made.size);
  }
  if (now.mtime_ns != made.mtime_ns) {
    if (!what.empty()) what += ", ";
    what += "it was modified";
  }
  if (now.size < made.settled_bytes) {
    return absl::StrCat(what, ", and it is shorter than the ", made.settled_bytes,
                        " bytes of the records already done");
  }
  // Same bytes up to the last settled record: the records done are the same.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(absl::StrCat("input ", path), errno);
  StreamHash hash;
  std::string buf(size_t{1} << 20, '\0');
  uint64_t left = made.settled_bytes;
  while (left > 0) {
    ssize_t n = ::read(fd.get(), buf.data(), std::min<uint64_t>(left, buf.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(absl::StrCat("read ", path), errno);
    if (n == 0) break;
    hash.Update(std::string_view(buf.data(), static_cast<size_t>(n)));
    left -= static_cast<uint64_t>(n);
  }
  if (left == 0 && hash.Value() == made.settled_hash) return std::string();
  return absl::StrCat(what, ", and its first ", made.settled_bytes,
                      " bytes (the records already done) are not the same");
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
    if (j.contains("input")) {
      const nlohmann::json& in = j.at("input");
      c.has_input = true;
      c.input.regular_file = in.at("regular_file").get<bool>();
      c.input.device = in.at("device").get<uint64_t>();
      c.input.inode = in.at("inode").get<uint64_t>();
      c.input.size = in.at("size").get<uint64_t>();
      c.input.mtime_ns = in.at("mtime_ns").get<int64_t>();
      c.input.settled_records = in.at("settled_records").get<uint64_t>();
      c.input.settled_bytes = in.at("settled_bytes").get<uint64_t>();
      c.input.settled_hash = in.at("settled_hash").get<uint64_t>();
    }
    return std::optional<Checkpoint>(std::move(c));
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat("checkpoint ", path, " is damaged: ", e.what(),
                                            "; run without --resume to start over"));
  }
}

absl::Status SaveCheckpoint(const std::string& path, const Checkpoint& c) {
  nlohmann::json j;
  j["version"] = 2;
  j["run"] = c.run;
  j["done_prefix"] = c.done.prefix();
  j["done_beyond"] = std::vector<uint64_t>(c.done.beyond().begin(), c.done.beyond().end());
  j["output_bytes"] = c.output_bytes;
  j["errors_bytes"] = c.errors_bytes;
  j["succeeded"] = c.succeeded;
  j["failed"] = c.failed;
  j["complete"] = c.complete;
  if (c.has_input) {
    j["input"] = {{"regular_file", c.input.regular_file},
                  {"device", c.input.device},
                  {"inode", c.input.inode},
                  {"size", c.input.size},
                  {"mtime_ns", c.input.mtime_ns},
                  {"settled_records", c.input.settled_records},
                  {"settled_bytes", c.input.settled_bytes},
                  {"settled_hash", c.input.settled_hash}};
  }
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
