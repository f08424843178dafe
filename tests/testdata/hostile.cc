#include "tests/testdata/hostile.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace procpool::hostile {

namespace {

std::string Failed(int err) {
  return std::string("failed: ") + std::strerror(err) + " (errno " + std::to_string(err) + ")";
}

}  // namespace

std::string ReadFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Failed(errno);
  char buf[64];
  const ssize_t n = ::read(fd, buf, sizeof(buf));
  const int err = errno;
  ::close(fd);
  if (n < 0) return Failed(err);
  return "succeeded: " + std::string(buf, static_cast<size_t>(n));
}

std::string WriteFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Failed(errno);
  static constexpr char kLine[] = "written by a task\n";
  for (size_t done = 0; done < sizeof(kLine) - 1;) {
    const ssize_t n = ::write(fd, kLine + done, sizeof(kLine) - 1 - done);
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return Failed(err);
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return "succeeded";
}

std::string ConnectTcp(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Failed(errno);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  const int err = errno;
  ::close(fd);
  if (rc != 0) return Failed(err);
  return "succeeded";
}

std::string ExecShell(const std::string& marker) {
  const std::string script = "echo pwned > '" + marker + "'";
  const char* argv[] = {"sh", "-c", script.c_str(), nullptr};
  ::execv("/bin/sh", const_cast<char* const*>(argv));
  return Failed(errno);
}

std::string PtraceParent(int) {
  const pid_t parent = ::getppid();
  if (::ptrace(PTRACE_SEIZE, parent, nullptr, nullptr) != 0) return Failed(errno);
  // Let go at once: a tracee left attached stops at its next signal.
  if (::ptrace(PTRACE_INTERRUPT, parent, nullptr, nullptr) == 0) {
    int status = 0;
    ::waitpid(parent, &status, __WALL);
  }
  ::ptrace(PTRACE_DETACH, parent, nullptr, nullptr);
  return "succeeded";
}

std::string SignalParent(int) {
  if (::kill(::getppid(), 0) != 0) return Failed(errno);
  return "succeeded";
}

std::string ForkSurvivor(int seconds) {
  const pid_t pid = ::fork();
  if (pid < 0) return Failed(errno);
  if (pid == 0) {
    ::setsid();
    for (int i = 0; i < seconds * 10; ++i) ::usleep(100'000);
    ::_exit(0);
  }
  return "succeeded: pid " + std::to_string(pid);
}

std::string Echo(const std::string& s) { return s; }

}  // namespace procpool::hostile
