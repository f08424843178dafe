// The real Scheduler, driven by hand with a made-up clock: a call that
// waits in a busy worker's pipeline goes to a worker that becomes idle
// once the call ahead of it has run a millisecond, however long calls
// usually take: a quick task does not wait for a 20 ms task ahead of it
// while the other worker (say, a crashed worker's replacement that has
// just started) sits idle.

#include <atomic>
#include <map>
#include <memory>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "pool/internal/claim_table.h"
#include "pool/internal/scheduler.h"
#include "pool/internal/task_state.h"
#include "pool/internal/wire.h"

namespace procpool::internal {
namespace {

struct HandWorker {
  std::unique_ptr<std::atomic<uint64_t>[]> words{new std::atomic<uint64_t>[kClaimSlots]()};
  ClaimTable claims{words.get(), nullptr};
};

class StealTest : public ::testing::Test {
 protected:
  StealTest() : sched_(Config()) {}

  static SchedulerConfig Config() {
    SchedulerConfig c;
    c.slots = 2;
    return c;
  }

  void StartTwoWorkers() {
    sched_.Start(now_, out_);
    std::vector<WorkerId> spawned;
    for (const Action& a : out_.controls) {
      if (a.kind == Action::Kind::kSpawn) spawned.push_back(a.worker);
    }
    ASSERT_EQ(spawned.size(), 2u);
    out_ = {};
    int pid = 100;
    for (WorkerId id : spawned) {
      workers_[id] = std::make_unique<HandWorker>();
      sched_.OnSpawned(id, pid++, &workers_[id]->claims);
      sched_.OnReady(id, 1, now_, out_);
    }
  }

  std::shared_ptr<TaskState> Submit() {
    auto t = std::make_shared<TaskState>(0, next_index_++);
    sched_.Submit(t, now_, out_);
    return t;
  }

  // The sends since the last call, by task.
  std::map<TaskState*, SendAction> TakeSends() {
    std::map<TaskState*, SendAction> sends;
    for (const SendAction& s : out_.sends) sends[s.call] = s;
    out_ = {};
    return sends;
  }

  // The worker starts the call (claims it), as procpool_worker does.
  void Starts(const SendAction& s) { ASSERT_TRUE(workers_[s.worker]->claims.TryStart(s.seq)); }

  // The worker answers the call after running it `run`.
  void Answers(const SendAction& s, absl::Duration run) {
    std::vector<Answer> answers(1);
    answers[0].id = s.call->id();
    answers[0].code = static_cast<uint8_t>(ResultCode::kOk);
    answers[0].run_ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(run));
    sched_.OnAnswers(s.worker, answers, now_, out_);
  }

  Scheduler sched_;
  Actions out_;
  absl::Time now_ = absl::FromUnixSeconds(1'000'000);
  std::map<WorkerId, std::unique_ptr<HandWorker>> workers_;
  size_t next_index_ = 0;
};

TEST_F(StealTest, AQuickTaskQueuedBehindALongOneGoesToTheWorkerThatFreesUp) {
  StartTwoWorkers();
  // Calls take 20 ms as far as the pool knows.
  auto first = Submit();
  auto second = Submit();
  auto sends = TakeSends();
  ASSERT_EQ(sends.size(), 2u);
  now_ += absl::Milliseconds(20);
  for (auto& [t, s] : sends) {
    Starts(s);
    Answers(s, absl::Milliseconds(20));
  }
  ASSERT_EQ(sched_.avg_task_ns(), 20'000'000u);
  ASSERT_TRUE(out_.controls.empty());
  for (const ResolveAction& r : out_.resolves) ASSERT_TRUE(r.status.ok()) << r.status;
  out_ = {};

  // Both workers start a 20 ms call; a quick task comes and, both being
  // busy, waits in one worker's pipeline.
  auto long_a = Submit();
  auto long_b = Submit();
  sends = TakeSends();
  ASSERT_EQ(sends.size(), 2u);
  for (auto& [t, s] : sends) Starts(s);
  now_ += absl::Milliseconds(1);
  auto quick = Submit();
  auto queued = TakeSends();
  ASSERT_EQ(queued.count(quick.get()), 1u) << "the quick task was not sent at all";
  const WorkerId busy = queued[quick.get()].worker;
  const SendAction other = sends[long_a.get()].worker == busy ? sends[long_b.get()]
                                                               : sends[long_a.get()];
  ASSERT_NE(other.worker, busy);

  // 2 ms later the other worker is done; the call ahead of the quick task
  // has run 3 ms of its 20.
  now_ += absl::Milliseconds(2);
  Answers(other, absl::Milliseconds(3));
  auto resent = TakeSends();
  ASSERT_EQ(resent.count(quick.get()), 1u)
      << "the quick task stayed behind a call that may run 17 ms more while a "
         "worker is idle";
  EXPECT_EQ(resent[quick.get()].worker, other.worker);
}

}  // namespace
}  // namespace procpool::internal
