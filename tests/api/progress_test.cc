// Progress: a bar on a terminal, nothing on a pipe, callbacks either way.

#include <fcntl.h>
#include <pty.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "plugins/math/math.h"
#include "pool/internal/progress.h"
#include "pool/pool.h"
#include "tests/api/test_env.h"

namespace procpool {
namespace {

using ::procpool::testing::Checked;
using ::procpool::testing::MakePool;
using ::procpool::testing::Options;

std::string Drain(int fd) {
  std::string out;
  char buf[4096];
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

TEST(ProgressTest, DrawsABarOnATerminal) {
  int master = -1, slave = -1;
  ASSERT_EQ(::openpty(&master, &slave, nullptr, nullptr, nullptr), 0);
  ProcessPool pool = MakePool(Options(2));
  auto add = Checked(pool, math::kAdd);
  std::vector<int> xs(500, 1);
  int n = 0;
  for (int r : pool.Map(MapOptions{.progress = true, .progress_fd = slave}, add, xs, xs)) {
    EXPECT_EQ(r, 2);
    ++n;
  }
  EXPECT_EQ(n, 500);
  std::string out = Drain(master);
  EXPECT_TRUE(absl::StrContains(out, "500/500")) << out;
  EXPECT_TRUE(absl::StrContains(out, "100%")) << out;
  EXPECT_TRUE(absl::StrContains(out, "\r")) << out;
  ::close(slave);
  ::close(master);
}

TEST(ProgressTest, DrawsNothingOnAPipe) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  ProcessPool pool = MakePool(Options(2));
  auto add = Checked(pool, math::kAdd);
  std::vector<int> xs(100, 1);
  for (int r : pool.Map(MapOptions{.progress = true, .progress_fd = fds[1]}, add, xs, xs)) {
    EXPECT_EQ(r, 2);
  }
  EXPECT_EQ(Drain(fds[0]), "");
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(ProgressTest, CallbackSeesDoneFailedAndTotal) {
  ProcessPool pool = MakePool(Options(2));
  auto check = Checked(pool, TaskRef<int(int)>("check_non_negative"));
  std::vector<int> xs = {1, -1, 2, -2, 3};
  Progress last;
  int calls = 0;
  MapOptions opts;
  opts.on_progress = [&](const Progress& p) {
    last = p;
    ++calls;
  };
  int n = 0;
  for (const auto& r : pool.TryMap(opts, check, xs)) {
    (void)r;
    ++n;
  }
  EXPECT_EQ(n, 5);
  EXPECT_GE(calls, 1);
  EXPECT_EQ(last.total, 5u);
  EXPECT_EQ(last.done, 5u);
  EXPECT_EQ(last.failed, 2u);
}

TEST(ProgressTest, UnknownTotalForAnUnsizedInput) {
  ProcessPool pool = MakePool(Options(2));
  auto add = Checked(pool, math::kAdd);
  Progress last;
  MapOptions opts;
  opts.on_progress = [&](const Progress& p) { last = p; };
  int n = 0;
  auto evens = std::views::iota(0, 100) | std::views::filter([](int i) { return i % 2 == 0; });
  for (int r : pool.Map(opts, add, evens, evens)) {
    (void)r;
    ++n;
  }
  EXPECT_EQ(n, 50);
  EXPECT_EQ(last.total, 0u);
  EXPECT_EQ(last.done, 50u);
}

TEST(ProgressTest, RenderShowsPercentRateEtaAndFailures) {
  Progress p;
  p.done = 250;
  p.total = 1000;
  p.failed = 3;
  p.items_per_second = 2500;
  p.eta = absl::Seconds(75);
  std::string s = internal::ProgressReporter::Render(p, 80);
  EXPECT_TRUE(absl::StrContains(s, " 25%")) << s;
  EXPECT_TRUE(absl::StrContains(s, "250/1000")) << s;
  EXPECT_TRUE(absl::StrContains(s, "2.5k/s")) << s;
  EXPECT_TRUE(absl::StrContains(s, "ETA 1:15")) << s;
  EXPECT_TRUE(absl::StrContains(s, "failed 3")) << s;
  EXPECT_LE(s.size(), 80u);
}

}  // namespace
}  // namespace procpool
