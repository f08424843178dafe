#include "pool/internal/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace procpool::internal {
namespace {

std::string Clock(absl::Duration d) {
  int64_t s = absl::ToInt64Seconds(d);
  if (s >= 3600) return absl::StrFormat("%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
  return absl::StrFormat("%d:%02d", s / 60, s % 60);
}

std::string Rate(double r) {
  if (r >= 1e6) return absl::StrFormat("%.1fM/s", r / 1e6);
  if (r >= 1e3) return absl::StrFormat("%.1fk/s", r / 1e3);
  return absl::StrFormat("%.1f/s", r);
}

int TerminalWidth(int fd) {
  winsize ws{};
  if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) return ws.ws_col;
  return 80;
}

}  // namespace

ProgressReporter::ProgressReporter(uint64_t total, bool draw, int fd,
                                   std::function<void(const Progress&)> callback,
                                   absl::Duration interval)
    : total_(total),
      draw_(draw && fd >= 0 && ::isatty(fd) == 1),
      fd_(fd),
      callback_(std::move(callback)),
      interval_(interval),
      start_(absl::Now()),
      last_(absl::InfinitePast()) {}

ProgressReporter::~ProgressReporter() {
  if (!draw_ && !callback_) return;
  Report();
  if (draw_ && drew_) {
    ssize_t r = ::write(fd_, "\n", 1);
    (void)r;
  }
}

Progress ProgressReporter::Snapshot() const {
  Progress p;
  p.done = std::max(consumed_, counters_->done.load(std::memory_order_relaxed));
  p.failed = std::max(consumed_failed_,
                      counters_->failed.load(std::memory_order_relaxed));
  p.total = total_;
  p.elapsed = absl::Now() - start_;
  double secs = absl::ToDoubleSeconds(p.elapsed);
  p.items_per_second = secs > 0 ? static_cast<double>(p.done) / secs : 0;
  if (p.total > 0 && p.items_per_second > 0 && p.done <= p.total) {
    p.eta = absl::Seconds(static_cast<double>(p.total - p.done) / p.items_per_second);
  }
  return p;
}

void ProgressReporter::Tick() {
  if (!draw_ && !callback_) return;
  absl::Time now = absl::Now();
  if (now - last_ < interval_) return;
  Report();
}

void ProgressReporter::Report() {
  last_ = absl::Now();
  Progress p = Snapshot();
  if (callback_) callback_(p);
  if (draw_) {
    std::string line = "\r" + Render(p, TerminalWidth(fd_) - 1) + "\x1b[K";
    ssize_t r = ::write(fd_, line.data(), line.size());
    (void)r;
    drew_ = true;
  }
}

std::string ProgressReporter::Render(const Progress& p, int width) {
  std::string counts =
      p.total > 0 ? absl::StrCat(p.done, "/", p.total) : absl::StrCat(p.done);
  std::string tail = absl::StrCat(" ", counts, " ", Rate(p.items_per_second));
  if (p.total > 0) {
    absl::StrAppend(&tail, " ETA ",
                    p.eta == absl::InfiniteDuration() ? "--:--" : Clock(p.eta));
  } else {
    absl::StrAppend(&tail, " ", Clock(p.elapsed));
  }
  if (p.failed > 0) absl::StrAppend(&tail, " failed ", p.failed);
  if (p.total == 0) return tail.substr(1);
  double frac = std::min(1.0, static_cast<double>(p.done) / static_cast<double>(p.total));
  std::string pct = absl::StrFormat("%3d%% ", static_cast<int>(std::floor(frac * 100)));
  int bar = std::max(10, width - static_cast<int>(tail.size() + pct.size()) - 2);
  int fill = static_cast<int>(frac * bar);
  std::string out = pct + "[";
  out.append(static_cast<size_t>(fill), '#');
  out.append(static_cast<size_t>(bar - fill), '.');
  out += "]";
  return out + tail;
}

}  // namespace procpool::internal
