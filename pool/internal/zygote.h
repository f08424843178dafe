// The template process of StartMethod::kZygote (a zygote) and the pool's
// handle on it.
//
// The pool spawns `procpool_worker --zygote` with one end of a
// SOCK_SEQPACKET socket as fd 3 (WorkerTemplate::Start). The template
// loads the plugins, runs the preload task, and says it is ready, or why
// it cannot serve (a plugin or the preload failed; it has more than one
// thread, so a fork could copy a lock some other thread holds). Then, for
// each request (the command line of a worker and the descriptors it gets
// at fixed numbers) it forks and answers the new worker's pid. It forks
// with clone(CLONE_PARENT): the worker's parent is the pool, as a spawned
// worker's is, so the pool reaps it, watches its pidfd, kills its process
// group and reads its exit status exactly as for a spawned one, and the
// worker's death signal follows the pool's thread that spawned the
// template. The forked worker leads a process group of its own and then
// runs as a spawned worker does from its initializer on (worker_main.cc).
// The template exits when the pool closes the socket (and with the pool,
// through PR_SET_PDEATHSIG).
//
// Messages (each one datagram):
//   template -> pool  'R'                              ready
//                     'E' text                         cannot serve; exits
//   pool -> template  'F' u32 n, n x i32 target fds, argv (NUL-terminated
//                     strings), with the n descriptors as SCM_RIGHTS
//   template -> pool  'P' i32 pid  |  'E' text          the fork's outcome
//
// glibc's fork() is not used (it cannot make a sibling), so the worker's
// glibc still has the template's thread id cached in its thread control
// block: pthread functions that name the calling thread by that cached id
// (pthread_setaffinity_np(pthread_self(), ...) and the like) act on the
// template's thread id, which is no live thread of the worker. raise(),
// abort() and gettid() ask the kernel and are unaffected (glibc 2.34+), and
// pthread_atfork handlers do not run.

#ifndef PROCPOOL_POOL_INTERNAL_ZYGOTE_H_
#define PROCPOOL_POOL_INTERNAL_ZYGOTE_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pool/internal/child_process.h"
#include "pool/internal/unique_fd.h"
#include "pool/internal/worker_command.h"

namespace procpool::internal {

// The pool's side: owns the template process and its socket. Not
// thread-safe. The destructor closes the socket and kills and reaps the
// template; the workers it forked are not affected.
class WorkerTemplate {
 public:
  // Spawns `worker_path` as the template for `command` (zygote set, fd 3;
  // plugins and preload as the workers'). Does not wait for it.
  static absl::StatusOr<WorkerTemplate> Start(const std::string& worker_path,
                                              const WorkerCommand& command);

  WorkerTemplate(WorkerTemplate&&) = default;
  WorkerTemplate& operator=(WorkerTemplate&&) = default;
  ~WorkerTemplate();

  pid_t pid() const { return proc_.pid(); }
  bool ready() const { return ready_; }

  // Waits up to `timeout` (zero: only looks) for the template to say it is
  // ready. OK once it is; kDeadlineExceeded while it has not said; the
  // error it reported; kUnavailable when it died or hung up.
  absl::Status AwaitReady(absl::Duration timeout);

  // Forks a worker from the (ready) template: `argv` its command line,
  // `fds` the descriptors it gets and their numbers there. Blocks until the
  // template answers, at most `timeout`. The result is a child of this
  // process. kUnavailable when the template died, hung up or did not
  // answer in time (then it is of no further use); the error it reported
  // (e.g. clone failed) otherwise.
  absl::StatusOr<ChildProcess> Fork(const std::vector<std::string>& argv,
                                    const std::vector<ChildProcess::FdMapping>& fds,
                                    absl::Duration timeout);

 private:
  WorkerTemplate(ChildProcess proc, UniqueFd sock)
      : proc_(std::move(proc)), sock_(std::move(sock)) {}
  // Reads one datagram, waiting at most `timeout`. kDeadlineExceeded when
  // none came; kUnavailable when the template hung up.
  absl::StatusOr<std::string> Receive(absl::Duration timeout);
  absl::Status Dead(absl::string_view what);

  ChildProcess proc_;
  UniqueFd sock_;
  bool ready_ = false;
};

// The template's side (in procpool_worker --zygote): says `error` (and
// returns 1) if it is not OK, else says ready and serves fork requests on
// `sock` until the pool hangs up (returns 0). In each forked worker it
// puts the descriptors in place, makes the worker a process group leader
// and returns run_worker(its command) through _exit; it never returns
// there.
int ServeAsTemplate(UniqueFd sock, const absl::Status& error,
                    absl::FunctionRef<int(const WorkerCommand&)> run_worker);

}  // namespace procpool::internal

#endif  // PROCPOOL_POOL_INTERNAL_ZYGOTE_H_
