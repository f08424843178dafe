// Files for poolrun: a block-buffered line reader and a buffered writer
// that counts what it wrote (so a checkpoint can name a byte offset to
// truncate back to).
//
// Thread-compatible: each object is used by one thread.

#ifndef PROCPOOL_CLI_IO_H_
#define PROCPOOL_CLI_IO_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cli/stream_hash.h"
#include "cli/unique_fd.h"

namespace procpool::cli {

// errno as a Status naming `context` (e.g. "read input.jsonl").
absl::Status ErrnoStatus(std::string_view context, int err);

// Reads a file (or stdin) in 1 MiB blocks and splits it into lines. Memory
// is one block plus the longest line.
class LineReader {
 public:
  // "-" reads stdin (not closed). kNotFound / kPermissionDenied name the
  // path. `stop`, if given, is polled when a read is interrupted by a
  // signal: once it is non-zero, the reader reports end of input.
  static absl::StatusOr<LineReader> Open(const std::string& path,
                                         const std::atomic<int>* stop = nullptr);

  // The next line into *line, without its "\n"; *terminated says whether
  // it had one (only the last line of a file may lack it). Returns false at
  // the end. Errors name the file. A line longer than max_line_bytes() is
  // not kept whole: *line holds its first kKeptOfLongLine bytes, and
  // *full_size (if given) its length, which it always holds.
  absl::StatusOr<bool> Next(std::string* line, bool* terminated, uint64_t* full_size = nullptr);

  // Lines longer than this are cut (see Next). Default: no limit.
  void set_max_line_bytes(uint64_t n) { max_line_ = n; }
  uint64_t max_line_bytes() const { return max_line_; }
  static constexpr size_t kKeptOfLongLine = size_t{64} << 10;

  const std::string& path() const { return path_; }
  // Bytes consumed so far (lines returned, with their newlines).
  uint64_t bytes_consumed() const { return consumed_; }
  // The size of a regular file; nullopt for pipes and terminals.
  std::optional<uint64_t> size() const { return size_; }
  // Lines returned so far.
  uint64_t lines() const { return lines_; }
  // The StreamHash of the bytes consumed so far.
  uint64_t hash() const { return hash_.Value(); }

 private:
  LineReader(std::string path, UniqueFd fd, bool owned, std::optional<uint64_t> size,
             const std::atomic<int>* stop);
  absl::StatusOr<bool> Fill();

  std::string path_;
  UniqueFd owned_fd_;
  int fd_ = -1;
  std::optional<uint64_t> size_;
  const std::atomic<int>* stop_ = nullptr;
  std::string buf_;
  size_t begin_ = 0;
  size_t end_ = 0;
  bool eof_ = false;
  uint64_t consumed_ = 0;
  uint64_t lines_ = 0;
  uint64_t max_line_ = UINT64_MAX;
  StreamHash hash_;
};

// A buffered writer to a file or to stdout/stderr, counting bytes. The
// first write error is kept and reported by every later call.
class OutputFile {
 public:
  // "-" writes `stdio_fd` (1 or 2, not closed). A path is opened for
  // writing (created 0644 if missing, close-on-exec) and truncated to
  // `keep_bytes` (0: emptied); writes go after that. kFailedPrecondition if
  // the file is shorter than `keep_bytes` (it was changed since the
  // checkpoint).
  static absl::StatusOr<OutputFile> Open(const std::string& path, uint64_t keep_bytes,
                                         int stdio_fd);

  OutputFile(OutputFile&&) = default;
  OutputFile& operator=(OutputFile&&) = default;
  // Flushes what is buffered (errors ignored: call Flush() to see them).
  ~OutputFile();

  void Write(std::string_view s);
  // Writes the buffer out. Retries EINTR and short writes.
  absl::Status Flush();
  // Flush, then fdatasync for a regular file: what was written survives a
  // crash of this process or of the machine.
  absl::Status Sync();

  uint64_t bytes() const { return bytes_; }
  bool is_stdio() const { return owned_fd_.get() < 0; }
  const std::string& path() const { return path_; }
  // True after a write failed with EPIPE (the reader went away).
  bool broken_pipe() const { return broken_pipe_; }
  const absl::Status& status() const { return status_; }

 private:
  OutputFile(std::string path, UniqueFd fd, int raw_fd, uint64_t bytes);

  std::string path_;
  UniqueFd owned_fd_;
  int fd_ = -1;
  std::string buf_;
  uint64_t bytes_ = 0;
  bool broken_pipe_ = false;
  bool regular_ = false;  // a regular file (fdatasync applies)
  absl::Status status_;
};

}  // namespace procpool::cli

#endif  // PROCPOOL_CLI_IO_H_
