// Driver (pool/internal/driver.h) without a world: a fake subclass counts
// its wake-ups, and the test plays the I/O thread's part.

#include "pool/internal/driver.h"

#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "pool/internal/scheduler.h"
#include "pool/internal/task_state.h"
#include "pool/internal/wire.h"

namespace procpool::internal {
namespace {

SchedulerConfig OneAgent() {
  SchedulerConfig c;
  c.kind = SchedulerConfig::Kind::kAgent;  // no claim tables to fake
  c.slots = 1;
  return c;
}

class FakeDriver final : public Driver {
 public:
  FakeDriver() : Driver(PoolOptions{}, OneAgent()) {}

  // The I/O thread's part.
  void StartOneReadyWorker() {
    absl::MutexLock l(&io_mu_);
    sched_.Start(absl::Now(), actions_);
    Execute();
    sched_.OnSpawned(spawned_, 1, nullptr);
    sched_.OnReady(spawned_, 1, absl::Now(), actions_);
    Execute();
  }
  void Turn() {
    absl::MutexLock l(&io_mu_);
    TakeRequests(absl::Now());
    Execute();
  }
  // The worker answers every call sent so far.
  void AnswerAll() {
    absl::MutexLock l(&io_mu_);
    std::vector<Answer> answers;
    for (uint64_t id : std::exchange(sent_, {})) {
      Answer a;
      a.id = id;
      a.code = static_cast<uint8_t>(ResultCode::kOk);
      a.run_ns = 1000;
      answers.push_back(std::move(a));
    }
    sched_.OnAnswers(spawned_, answers, absl::Now(), actions_);
    Execute();
  }
  bool intake_wakes() const { return intake_wakes_.load(); }
  int wakes() const { return wakes_; }

  void Enqueue(std::shared_ptr<TaskState> task) override {
    std::vector<std::shared_ptr<TaskState>> one{std::move(task)};
    EnqueueMany(one);
  }
  int num_workers() const override { return 1; }
  std::vector<int> WorkerPids() const override { return {}; }
  PoolStats Stats() const override { return {}; }

 private:
  void Wake() override { ++wakes_; }
  void WriteSends(std::vector<SendAction>& sends) override {
    for (const SendAction& s : sends) sent_.push_back(s.call->id());
    sends.clear();
  }
  void Control(const Action& a) override {
    if (a.kind == Action::Kind::kSpawn) spawned_ = a.worker;
  }
  size_t Processes() const override { return 1; }

  WorkerId spawned_ = 0;
  std::vector<uint64_t> sent_;
  int wakes_ = 0;
};

std::shared_ptr<TaskState> NewTask() { return std::make_shared<TaskState>(0, 0); }

// A caller that finds every window full queues without waking the I/O
// thread: an answer comes first. If that answer was the last one out, the
// I/O thread has nothing more to wait for, so it must be woken for what
// such a caller queued, or it sleeps until some timer.
TEST(DriverTest, TasksQueuedWhileSaturatedAreTakenOnceAWindowOpens) {
  FakeDriver d;
  d.StartOneReadyWorker();
  d.Enqueue(NewTask());
  ASSERT_EQ(d.wakes(), 1);
  d.Turn();  // sent: the worker's window (one call) is full
  ASSERT_FALSE(d.intake_wakes());

  d.Enqueue(NewTask());  // while saturated: no wake-up
  EXPECT_EQ(d.wakes(), 1);
  d.AnswerAll();  // the window opens; the task waits in the intake
  EXPECT_EQ(d.wakes(), 2) << "nothing would bring the I/O thread back";
  EXPECT_TRUE(d.intake_wakes());

  d.Turn();
  d.AnswerAll();
  d.Enqueue(NewTask());  // not saturated: wakes as usual
  EXPECT_EQ(d.wakes(), 3);
}

}  // namespace
}  // namespace procpool::internal
