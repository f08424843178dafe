#include "cli/io.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace procpool::cli {

namespace {
constexpr size_t kBlock = size_t{1} << 20;
// Lines at least this long are handed over in the reader's buffer.
constexpr size_t kStealLine = 4 * kBlock;
// After a line this long, freed memory goes back to the system.
constexpr size_t kTrimLine = size_t{16} << 20;
}  // namespace

absl::Status ErrnoStatus(std::string_view context, int err) {
  const std::string msg =
      absl::StrCat(absl::string_view(context.data(), context.size()), ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(msg);
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return absl::ResourceExhaustedError(msg);
    default:
      return absl::UnknownError(msg);
  }
}

// ---- LineReader ----

LineReader::LineReader(std::string path, UniqueFd fd, bool owned, std::optional<uint64_t> size,
                       const std::atomic<int>* stop)
    : path_(std::move(path)), owned_fd_(std::move(fd)), size_(size), stop_(stop) {
  fd_ = owned ? owned_fd_.get() : STDIN_FILENO;
}

absl::StatusOr<LineReader> LineReader::Open(const std::string& path,
                                            const std::atomic<int>* stop) {
  UniqueFd fd;
  int raw = STDIN_FILENO;
  std::string name = path;
  if (path == "-") {
    name = "<stdin>";
  } else {
    fd = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return ErrnoStatus(absl::StrCat("input ", path), errno);
    raw = fd.get();
  }
  struct stat st {};
  std::optional<uint64_t> size;
  if (::fstat(raw, &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat("input ", path, " is a directory"));
    }
    if (S_ISREG(st.st_mode)) size = static_cast<uint64_t>(st.st_size);
  }
  const bool owned = path != "-";
  return LineReader(std::move(name), std::move(fd), owned, size, stop);
}

absl::StatusOr<bool> LineReader::Fill() {
  if (eof_) return false;
  if (begin_ > 0) {
    // Only the bytes not consumed move; the buffer keeps its size, so it
    // is not zero-filled again.
    std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (buf_.size() < end_ + kBlock) buf_.resize(end_ + kBlock);
  while (true) {
    ssize_t n = ::read(fd_, buf_.data() + end_, buf_.size() - end_);
    if (n < 0 && errno == EINTR) {
      if (stop_ != nullptr && stop_->load() != 0) {
        eof_ = true;
        return false;
      }
      continue;
    }
    if (n < 0) return ErrnoStatus(absl::StrCat("read ", path_), errno);
    if (n == 0) {
      eof_ = true;
      return false;
    }
    end_ += static_cast<size_t>(n);
    return true;
  }
}

absl::StatusOr<bool> LineReader::Next(std::string* line, bool* terminated,
                                      uint64_t* full_size) {
  size_t scanned = begin_;
  uint64_t dropped = 0;  // bytes of a too long line already let go
  auto take = [&](size_t end, size_t skip) {
    const size_t len = end - begin_;
    if (full_size != nullptr) *full_size = dropped + len;
    hash_.Update(std::string_view(buf_.data() + begin_, len + skip));
    consumed_ += len + skip;
    ++lines_;
    if (dropped == 0 && len <= max_line_ && begin_ == 0 && len >= kStealLine) {
      // A long line takes the buffer it is in, instead of a copy of it.
      std::string rest(buf_.data() + end + skip, end_ - (end + skip));
      buf_.resize(len);
      line->swap(buf_);
      buf_ = std::move(rest);
      begin_ = 0;
      end_ = buf_.size();
      // The buffer grew by doubling to hold the line; poolrun keeps freed
      // memory for reuse (TuneProcessForThroughput), so the smaller buffers
      // it left behind would stay resident beside it. Give them back.
      if (len >= kTrimLine) ::malloc_trim(0);
      return;
    }
    if (dropped == 0 && len <= max_line_) {
      line->assign(buf_.data() + begin_, len);
    } else if (dropped == 0) {
      line->assign(buf_.data() + begin_, std::min(len, kKeptOfLongLine));
    }
    begin_ = end + skip;
  };
  while (true) {
    const char* nl = static_cast<const char*>(
        std::memchr(buf_.data() + scanned, '\n', end_ - scanned));
    if (nl != nullptr) {
      take(static_cast<size_t>(nl - buf_.data()), 1);
      *terminated = true;
      return true;
    }
    if (dropped + (end_ - begin_) > max_line_ && end_ - begin_ >= kKeptOfLongLine) {
      // Too long to keep: hold its first bytes, let the rest go.
      if (dropped == 0) line->assign(buf_.data() + begin_, kKeptOfLongLine);
      hash_.Update(std::string_view(buf_.data() + begin_, end_ - begin_));
      dropped += end_ - begin_;
      consumed_ += end_ - begin_;
      begin_ = end_;
    }
    scanned = end_ - begin_;  // relative: Fill() moves the data to offset 0
    absl::StatusOr<bool> more = Fill();
    if (!more.ok()) return more.status();
    if (!*more) {
      if (begin_ == end_ && dropped == 0) return false;
      take(end_, 0);
      *terminated = false;
      return true;
    }
  }
}

// ---- OutputFile ----

OutputFile::OutputFile(std::string path, UniqueFd fd, int raw_fd, uint64_t bytes)
    : path_(std::move(path)), owned_fd_(std::move(fd)), fd_(raw_fd), bytes_(bytes) {
  buf_.reserve(kBlock);
}

absl::StatusOr<OutputFile> OutputFile::Open(const std::string& path, uint64_t keep_bytes,
                                            int stdio_fd) {
  if (path == "-") {
    return OutputFile(stdio_fd == 1 ? "<stdout>" : "<stderr>", UniqueFd(), stdio_fd, 0);
  }
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  if (fd.get() < 0) return ErrnoStatus(absl::StrCat("output ", path), errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus(absl::StrCat("stat ", path), errno);
  if (S_ISREG(st.st_mode)) {
    if (static_cast<uint64_t>(st.st_size) < keep_bytes) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, " has ", st.st_size, " bytes but the checkpoint recorded ", keep_bytes,
          ": it was changed since; run without --resume to start over"));
    }
    if (::ftruncate(fd.get(), static_cast<off_t>(keep_bytes)) != 0) {
      return ErrnoStatus(absl::StrCat("truncate ", path), errno);
    }
    if (::lseek(fd.get(), static_cast<off_t>(keep_bytes), SEEK_SET) < 0) {
      return ErrnoStatus(absl::StrCat("seek ", path), errno);
    }
  } else if (keep_bytes != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is not a regular file, so it cannot be resumed"));
  }
  const int raw = fd.get();
  OutputFile f(path, std::move(fd), raw, keep_bytes);
  f.regular_ = S_ISREG(st.st_mode);
  return f;
}

OutputFile::~OutputFile() {
  if (fd_ >= 0) (void)Flush();
}

void OutputFile::Write(std::string_view s) {
  bytes_ += s.size();
  if (s.size() < kBlock) {
    buf_.append(s.data(), s.size());
    if (buf_.size() >= kBlock) (void)Flush();
    return;
  }
  // A large piece is written where it is, not copied into the buffer.
  if (!Flush().ok()) return;
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::write(fd_, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (errno == EPIPE) broken_pipe_ = true;
      status_ = ErrnoStatus(absl::StrCat("write ", path_), errno);
      return;
    }
    done += static_cast<size_t>(n);
  }
}

absl::Status OutputFile::Flush() {
  if (!status_.ok()) return status_;
  size_t done = 0;
  while (done < buf_.size()) {
    ssize_t n = ::write(fd_, buf_.data() + done, buf_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (errno == EPIPE) broken_pipe_ = true;
      status_ = ErrnoStatus(absl::StrCat("write ", path_), errno);
      buf_.clear();
      return status_;
    }
    done += static_cast<size_t>(n);
  }
  buf_.clear();
  return absl::OkStatus();
}

absl::Status OutputFile::Sync() {
  if (absl::Status s = Flush(); !s.ok()) return s;
  if (is_stdio() || !regular_) return absl::OkStatus();  // pipes, /dev/null
  if (::fdatasync(fd_) != 0) {
    status_ = ErrnoStatus(absl::StrCat("fdatasync ", path_), errno);
    return status_;
  }
  return absl::OkStatus();
}

}  // namespace procpool::cli
