// When the pool's process is SIGKILLed, its workers exit at once (EOF on
// their socket and PR_SET_PDEATHSIG), even while running a task that never
// ends: no orphan outlives a crashed parent.

#include <signal.h>
#include <spawn.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "pool/runfiles.h"

extern char** environ;

namespace {

TEST(ParentDeathTest, WorkersExitPromptlyWhenTheParentIsKilled) {
  // Orphaned workers are re-parented to us, so we can reap and time them.
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  absl::StatusOr<std::string> parent_bin =
      procpool::FindRunfile("tests/reliability/orphan_parent");
  ASSERT_TRUE(parent_bin.ok()) << parent_bin.status();

  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  char* argv[] = {const_cast<char*>(parent_bin->c_str()), nullptr};
  pid_t parent = -1;
  ASSERT_EQ(::posix_spawn(&parent, parent_bin->c_str(), &actions, nullptr, argv,
                          environ),
            0);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);

  // "pids <a> <b>\n", within a bound.
  std::string line;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  char c;
  while (line.find('\n') == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, 100) > 0) {
      if (::read(out[0], &c, 1) != 1) break;
      line += c;
    }
  }
  ::close(out[0]);
  std::vector<std::string> parts = absl::StrSplit(line, absl::ByAnyChar(" \n"),
                                                  absl::SkipEmpty());
  ASSERT_EQ(parts.size(), 3u) << "parent said: " << line;
  int a = 0, b = 0;
  ASSERT_TRUE(absl::SimpleAtoi(parts[1], &a));
  ASSERT_TRUE(absl::SimpleAtoi(parts[2], &b));

  auto killed_at = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(parent, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(parent, &status, 0), parent);

  double worst_ms = 0;
  for (pid_t w : {a, b}) {
    bool reaped = false;
    while (std::chrono::steady_clock::now() < killed_at + std::chrono::seconds(10)) {
      pid_t r = ::waitpid(w, &status, WNOHANG);
      if (r == w) {
        reaped = true;
        break;
      }
      ::usleep(200);
    }
    ASSERT_TRUE(reaped) << "worker " << w << " outlived its parent";
    double ms = std::chrono::duration<double, std::milli>(
                    std::chrono::steady_clock::now() - killed_at)
                    .count();
    worst_ms = std::max(worst_ms, ms);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "worker " << w << " status " << status;
  }
  std::printf("workers gone %.2f ms after the parent was killed\n", worst_ms);
  // The promise is 100 ms; the bound here is loose so that a loaded CI
  // machine does not fail it. The figure above is what was observed.
  EXPECT_LT(worst_ms, 1000.0);
}

}  // namespace
