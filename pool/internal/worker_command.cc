#include "pool/internal/worker_command.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace procpool::internal {

namespace {

std::string HexEncode(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

bool HexDecode(absl::string_view hex, std::string* out) {
  if (hex.size() % 2 != 0) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  out->clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
  }
  return true;
}

}  // namespace

std::vector<std::string> WorkerCommand::ToArgv(const std::string& program) const {
  std::vector<std::string> argv = {program, absl::StrCat("--fd=", fd),
                                   absl::StrCat("--parent=", parent)};
  if (zygote) {
    argv.push_back("--zygote");
  } else {
    argv.push_back(absl::StrCat("--status-fd=", status_fd));
    argv.push_back(absl::StrCat("--max-frame=", max_frame));
  }
  if (!preload_task.empty()) {
    argv.push_back(absl::StrCat("--preload-task=", preload_task));
    argv.push_back(absl::StrCat("--preload-fingerprint=", preload_fingerprint));
    argv.push_back(absl::StrCat("--preload-args=", HexEncode(preload_args)));
  }
  if (call_region_fd >= 0) {
    argv.push_back(absl::StrCat("--call-region-fd=", call_region_fd));
    argv.push_back(absl::StrCat("--result-region-fd=", result_region_fd));
    argv.push_back(absl::StrCat("--shm-min=", shm_min));
  }
  if (max_tasks > 0) argv.push_back(absl::StrCat("--max-tasks=", max_tasks));
  if (max_rss > 0) argv.push_back(absl::StrCat("--max-rss=", max_rss));
  if (!init_task.empty()) {
    argv.push_back(absl::StrCat("--init-task=", init_task));
    argv.push_back(absl::StrCat("--init-fingerprint=", init_fingerprint));
    argv.push_back(absl::StrCat("--init-args=", HexEncode(init_args)));
  }
  if (sandbox) {
    argv.push_back("--sandbox");
    if (sandbox_stop_on_denied) argv.push_back("--sandbox-stop-on-denied");
    if (sandbox_netns) argv.push_back("--sandbox-netns");
    for (const std::string& p : sandbox_read) argv.push_back(absl::StrCat("--sandbox-read=", p));
    for (const std::string& p : sandbox_write) argv.push_back(absl::StrCat("--sandbox-write=", p));
    if (sandbox_max_file_bytes > 0) {
      argv.push_back(absl::StrCat("--sandbox-max-file-bytes=", sandbox_max_file_bytes));
    }
    if (sandbox_max_processes > 0) {
      argv.push_back(absl::StrCat("--sandbox-max-processes=", sandbox_max_processes));
    }
  }
  // Hard limits (worker_limits.h).
  if (limit_data > 0) argv.push_back(absl::StrCat("--limit-data=", limit_data));
  if (limit_cpu_ms > 0) argv.push_back(absl::StrCat("--limit-cpu-ms=", limit_cpu_ms));
  if (limit_files > 0) argv.push_back(absl::StrCat("--limit-files=", limit_files));
  argv.insert(argv.end(), plugins.begin(), plugins.end());
  return argv;
}

absl::StatusOr<WorkerCommand> WorkerCommand::Parse(int argc, const char* const* argv) {
  WorkerCommand c;
  c.fd = c.status_fd = -1;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view a = argv[i];
    auto value = [&](absl::string_view flag, auto* dst) {
      return absl::StartsWith(a, flag) && absl::SimpleAtoi(a.substr(flag.size()), dst);
    };
    int64_t parent = 0;
    if (value("--fd=", &c.fd) || value("--status-fd=", &c.status_fd) ||
        value("--max-frame=", &c.max_frame) || value("--max-tasks=", &c.max_tasks) ||
        value("--max-rss=", &c.max_rss) ||
        value("--init-fingerprint=", &c.init_fingerprint) ||
        value("--preload-fingerprint=", &c.preload_fingerprint) ||
        value("--call-region-fd=", &c.call_region_fd) ||
        value("--result-region-fd=", &c.result_region_fd) ||
        value("--shm-min=", &c.shm_min) ||
        value("--sandbox-max-file-bytes=", &c.sandbox_max_file_bytes) ||
        value("--sandbox-max-processes=", &c.sandbox_max_processes) ||
        value("--limit-data=", &c.limit_data) || value("--limit-cpu-ms=", &c.limit_cpu_ms) ||
        value("--limit-files=", &c.limit_files)) {
      continue;
    }
    if (value("--parent=", &parent)) {
      c.parent = static_cast<pid_t>(parent);
      continue;
    }
    if (absl::StartsWith(a, "--init-task=")) {
      c.init_task = std::string(a.substr(12));
      continue;
    }
    if (absl::StartsWith(a, "--preload-task=")) {
      c.preload_task = std::string(a.substr(15));
      continue;
    }
    if (a == "--zygote") {
      c.zygote = true;
      continue;
    }
    if (a == "--sandbox") {
      c.sandbox = true;
      continue;
    }
    if (a == "--sandbox-netns") {
      c.sandbox_netns = true;
      continue;
    }
    if (a == "--sandbox-stop-on-denied") {
      c.sandbox_stop_on_denied = true;
      continue;
    }
    if (absl::StartsWith(a, "--sandbox-read=") && a.size() > 15) {
      c.sandbox_read.emplace_back(a.substr(15));
      continue;
    }
    if (absl::StartsWith(a, "--sandbox-write=") && a.size() > 16) {
      c.sandbox_write.emplace_back(a.substr(16));
      continue;
    }
    if (absl::StartsWith(a, "--init-args=")) {
      if (!HexDecode(a.substr(12), &c.init_args)) {
        return absl::InvalidArgumentError("--init-args is not hex");
      }
      continue;
    }
    if (absl::StartsWith(a, "--preload-args=")) {
      if (!HexDecode(a.substr(15), &c.preload_args)) {
        return absl::InvalidArgumentError("--preload-args is not hex");
      }
      continue;
    }
    if (absl::StartsWith(a, "--")) {
      return absl::InvalidArgumentError(absl::StrCat("unknown or malformed argument ", a));
    }
    c.plugins.emplace_back(a);
  }
  if (c.fd < 0) return absl::InvalidArgumentError("--fd is missing");
  if (c.status_fd < 0 && !c.zygote) return absl::InvalidArgumentError("--status-fd is missing");
  if (c.parent <= 0) return absl::InvalidArgumentError("--parent is missing");
  if (!c.sandbox && (c.sandbox_stop_on_denied || !c.sandbox_read.empty() ||
                     !c.sandbox_write.empty() || c.sandbox_max_file_bytes > 0 ||
                     c.sandbox_max_processes > 0 || c.sandbox_netns)) {
    return absl::InvalidArgumentError("--sandbox-* flags without --sandbox");
  }
  return c;
}

}  // namespace procpool::internal
