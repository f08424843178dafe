// The scheduler alone (pool/internal/scheduler.h), driven as a pool
// drives it: tasks submitted, sent to workers that answer at once, each
// answer freeing room for the next. No process, socket or clock: the cost
// of its decisions per event, with 2, 64 and 1,000 workers (or MPI agents
// of 4 workers each), which should not grow with the number of workers.
//
//   bazel run -c opt //bench:scheduler_bench
#include <atomic>
#include <memory>
#include <vector>

#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "pool/internal/claim_table.h"
#include "pool/internal/scheduler.h"
#include "pool/internal/task_state.h"
#include "pool/internal/wire.h"

namespace procpool::bench {
namespace {

using internal::Actions;
using internal::Answer;
using internal::ClaimTable;
using internal::ResultBytes;
using internal::ResultCode;
using internal::Scheduler;
using internal::SchedulerConfig;
using internal::TaskState;
using internal::WorkerId;

struct FakeWorker {
  std::unique_ptr<std::atomic<uint64_t>[]> words;
  std::unique_ptr<ClaimTable> claims;
  std::vector<uint64_t> received;  // task ids sent, not yet answered
};

void BM_SchedulerEvents(benchmark::State& state) {
  const size_t workers = static_cast<size_t>(state.range(0));
  const bool agents = state.range(1) != 0;
  SchedulerConfig config;
  config.slots = workers;
  config.kind = agents ? SchedulerConfig::Kind::kAgent : SchedulerConfig::Kind::kProcess;
  Scheduler sched(config);
  sched.SetTaskNames({"t"});
  absl::Time now = absl::FromUnixSeconds(1'000'000);
  Actions out;
  std::vector<FakeWorker> fake(workers + 1);
  std::vector<WorkerId> ids;
  sched.Start(now, out);
  for (const internal::Action& a : out.controls) {
    if (a.kind != internal::Action::Kind::kSpawn) continue;
    FakeWorker& w = fake[a.worker];
    if (!agents) {
      w.words.reset(new std::atomic<uint64_t>[internal::kClaimSlots]());
      w.claims = std::make_unique<ClaimTable>(w.words.get(), nullptr);
    }
    sched.OnSpawned(a.worker, static_cast<int>(a.worker), w.claims.get());
    ids.push_back(a.worker);
  }
  out = Actions();
  for (WorkerId id : ids) sched.OnReady(id, agents ? 4 : 1, now, out);
  out = Actions();
  // Tasks of about 10 us each, as measured answers say: batches of 100.
  constexpr uint64_t kRunNs = 10'000;
  // Keep this many tasks submitted and unanswered: each worker's window
  // full, and a queue behind.
  const size_t in_system = 4 * workers * (agents ? 4 : 1) + 64;
  size_t outstanding = 0;
  uint64_t events = 0;
  std::vector<Answer> answers;
  size_t next_worker = 0;
  for (auto _ : state) {
    // Top up the tasks in the system.
    while (outstanding < in_system) {
      auto t = std::make_shared<TaskState>(0, 0);
      t->args() = "a";
      sched.Submit(std::move(t), now, out);
      ++outstanding;
      ++events;
    }
    for (const internal::SendAction& s : out.sends) fake[s.worker].received.push_back(s.call->id());
    for (internal::ResolveAction& r : out.resolves) r.task->Complete(std::move(r.status));
    out.sends.clear();
    out.resolves.clear();
    out.controls.clear();
    // One worker answers what it holds, in order.
    for (size_t k = 0; k < ids.size(); ++k) {
      FakeWorker& w = fake[ids[next_worker]];
      const WorkerId id = ids[next_worker];
      next_worker = (next_worker + 1) % ids.size();
      if (w.received.empty()) continue;
      answers.clear();
      for (uint64_t task_id : w.received) {
        Answer a;
        a.id = task_id;
        a.code = static_cast<uint8_t>(ResultCode::kOk);
        a.run_ns = kRunNs;
        a.bytes = ResultBytes(std::string("r"));
        answers.push_back(std::move(a));
      }
      outstanding -= w.received.size();
      w.received.clear();
      // The clock moves as the whole pool's would: this worker's answers
      // took their run time, in parallel with every other worker's.
      now += absl::Nanoseconds(kRunNs * answers.size() / (workers * (agents ? 4 : 1)) + 1);
      sched.OnAnswers(id, answers, now, out);
      events += answers.size();
      break;
    }
  }
  // Items are events: a task submitted, or a task's answer taken.
  state.SetItemsProcessed(static_cast<int64_t>(events));
}
BENCHMARK(BM_SchedulerEvents)
    ->ArgNames({"workers", "agents"})
    ->Args({2, 0})
    ->Args({64, 0})
    ->Args({1000, 0})
    ->Args({2, 1})
    ->Args({64, 1})
    ->Args({1000, 1});

}  // namespace
}  // namespace procpool::bench
