// procpool demo: every example of the article "Two different APIs related to
// Process Pool in Python" (multiprocessing.Pool vs ProcessPoolExecutor),
// redone in C++ with procpool, one after another.
//
//   bazel run //:demo        (or bazel-bin/demo from the repository root)
//
// The task is the article's `task(x, y) = x + y` after a simulated heavy
// load, here the math plugin's `slow_add`: a random 10-50 ms sleep instead of
// 1-5 s, so the whole demo takes about a second. It runs in worker
// processes that load plugins/math/libmath.so.
//
// Exits 0 when every section ran, 1 (with the error on stderr) otherwise.

#include <signal.h>
#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <initializer_list>
#include <map>
#include <ranges>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "plugins/math/math.h"
#include "pool/pool.h"
#include "pool/runfiles.h"

namespace {

using procpool::Future;
using procpool::ProcessPool;
using SlowAdd = procpool::TaskHandle<int(int, int)>;

// ---- Output helpers ----

void Heading(std::string_view title) { absl::PrintF("\n== %s ==\n", title); }

// The Python the section replaces, indented as code.
void Python(std::initializer_list<std::string_view> lines) {
  absl::PrintF("  Python:\n");
  for (std::string_view l : lines) absl::PrintF("      %s\n", l);
}

// The C++ that replaces it.
void Cpp(std::initializer_list<std::string_view> lines,
         std::string_view label = "procpool") {
  absl::PrintF("  %s:\n", label);
  for (std::string_view l : lines) absl::PrintF("      %s\n", l);
}

// One remark, word-wrapped to fit 80 columns.
void Note(std::string_view text) {
  constexpr size_t kWidth = 78;
  std::string line = "  ->";
  // Debian's Abseil has its own absl::string_view, distinct from std's.
  absl::string_view all(text.data(), text.size());
  for (absl::string_view word : absl::StrSplit(all, ' ', absl::SkipEmpty())) {
    if (line.size() + 1 + word.size() > kWidth && line.size() > 5) {
      absl::PrintF("%s\n", line);
      line = "    ";
    }
    absl::StrAppend(&line, " ", word);
  }
  absl::PrintF("%s\n", line);
}

std::string Seconds(absl::Duration d) {
  return absl::StrFormat("%.3f s", absl::ToDoubleSeconds(d));
}

std::string Pids(const std::vector<int>& pids) {
  return absl::StrJoin(pids, " ");
}

// ---- Setup ----

struct Demo {
  std::string plugin;
  std::vector<int> xs = {1, 2, 3, 4};  // xs = range(1, 5)
  std::vector<int> ys = {1, 2, 3, 4};  // ys = range(1, 5)
};

absl::StatusOr<ProcessPool> StartPool(const Demo& demo, int workers) {
  procpool::PoolOptions options;
  options.max_workers = workers;
  options.plugins = {demo.plugin};
  return ProcessPool::Create(options);
}

// ---- The article's examples ----

// mp.Pool(processes=4).starmap(task, zip(xs, ys))
absl::Status PoolStarmap(const Demo& demo, ProcessPool& pool,
                         const SlowAdd& slow_add) {
  Heading("1. multiprocessing.Pool: pool.starmap(task, zip(xs, ys))");
  Python({
      "with mp.Pool(processes=4) as pool:",
      "    for result in pool.starmap(task, zip(xs, ys)):",
      "        print(f\"{result=}\")",
  });
  Cpp({
      "for (int result : pool->Map(slow_add, xs, ys))",
      "  std::cout << \"result=\" << result;",
  });
  absl::Time start = absl::Now();
  for (int result : pool.Map(slow_add, demo.xs, demo.ys)) {
    absl::PrintF("  result=%d\n", result);
  }
  Note(absl::StrCat(demo.xs.size(), " tasks in ", Seconds(absl::Now() - start),
                    " with ", pool.num_workers(),
                    " workers (each task sleeps 10-50 ms; one after another "
                    "they would take about 0.12 s)"));
  Note(
      "starmap is eager: it hands back the whole list at the end. Map is "
      "lazy: it yields each result, in input order, as soon as it is in. "
      "The eager forms exist too: pool->MapAll(slow_add, xs, ys), or "
      "pool->Starmap(slow_add, pairs), returns the whole std::vector.");
  return absl::OkStatus();
}

// executor.map(task, xs, ys)
absl::Status ExecutorMap(const Demo& demo, ProcessPool& pool,
                         const SlowAdd& slow_add) {
  Heading("2. ProcessPoolExecutor: executor.map(task, xs, ys), no zip");
  Python({
      "with futures.ProcessPoolExecutor(max_workers=4) as executor:",
      "    for result in executor.map(task, xs, ys):",
      "        print(f\"{result=}\")",
  });
  Cpp({
      "for (int result : pool->Map(slow_add, xs, ys))  // no zip",
  });
  absl::Time start = absl::Now();
  for (int result : pool.Map(slow_add, demo.xs, demo.ys)) {
    absl::PrintF("  result=%d   (at %s)\n", result,
                 Seconds(absl::Now() - start));
  }
  Note(
      "the same shape as executor.map: one range per argument (any number "
      "of them), lazy, results in input order. Unlike executor.map, which "
      "submits its whole input up front, Map reads its inputs only a bounded "
      "window ahead (see section 5).");
  return absl::OkStatus();
}

// executor.submit + futures.as_completed
absl::Status SubmitAsCompleted(const Demo& demo, ProcessPool& pool,
                               const SlowAdd& slow_add) {
  Heading("3. executor.submit(task, x, y) + futures.as_completed(todo)");
  Python({
      "todo = [executor.submit(task, x, y) for x, y in zip(xs, ys)]",
      "for future in futures.as_completed(todo):",
      "    print(f\"result={future.result()}\")",
  });
  Cpp({
      "std::vector<procpool::Future<int>> todo;",
      "for (size_t i = 0; i < xs.size(); ++i)",
      "  todo.push_back(pool->Submit(slow_add, xs[i], ys[i]));",
      "for (const auto& done : procpool::AsCompleted(todo))",
      "  std::cout << \"result=\" << done.future.Get();",
  });
  std::vector<Future<int>> todo;
  for (size_t i = 0; i < demo.xs.size(); ++i) {
    todo.push_back(pool.Submit(slow_add, demo.xs[i], demo.ys[i]));
  }
  std::vector<size_t> order;
  for (const auto& done : procpool::AsCompleted(todo)) {
    absl::StatusOr<int> result = done.future.Result();
    if (!result.ok()) return result.status();
    absl::PrintF("  result=%d\n", *result);
    order.push_back(done.index);
  }
  std::string completion =
      absl::StrCat("completion order: #", absl::StrJoin(order, " #"),
                   "; submission order: #0 #1 #2 #3");
  bool same = true;
  for (size_t i = 0; i < order.size(); ++i) same = same && order[i] == i;
  Note(completion);
  Note(same ? "(this run they happened to finish in submission order; "
              "the sleeps are random, run it again)"
            : "as in Python, futures come back in completion order, not "
              "submission order.");
  return absl::OkStatus();
}

// The "enhanced" version: a hand-kept {future: (x, y)} dict.
absl::Status WhichInput(const Demo& demo, ProcessPool& pool,
                        const SlowAdd& slow_add) {
  Heading("4. the \"enhanced\" version: a hand-kept {future: (x, y)} dict");
  Python({
      "result = {}",
      "todo = {executor.submit(task, x, y): (x, y) for x, y in zip(xs, ys)}",
      "for future in futures.as_completed(todo):",
      "    input_args = todo[future]",
      "    result[input_args] = future.result()",
  });

  Cpp(
      {
          "for (const auto& done : procpool::AsCompleted(todo))",
          "  result[{xs[done.index], ys[done.index]}] = done.future.Get();",
      },
      "procpool, way 1: AsCompleted yields {index, future}, so no dict");
  std::vector<Future<int>> todo;
  for (size_t i = 0; i < demo.xs.size(); ++i) {
    todo.push_back(pool.Submit(slow_add, demo.xs[i], demo.ys[i]));
  }
  std::map<std::pair<int, int>, int> result;
  for (const auto& done : procpool::AsCompleted(todo)) {
    absl::StatusOr<int> r = done.future.Result();
    if (!r.ok()) return r.status();
    int x = demo.xs[done.index], y = demo.ys[done.index];
    result[{x, y}] = *r;
    absl::PrintF("  input #%d (%d, %d) -> %d\n", done.index, x, y, *r);
  }

  Cpp(
      {
          "for (const auto& item : pool->MapUnordered(slow_add, xs, ys))",
          "  result[item.args] = *item.result;   // item.index, too",
      },
      "procpool, way 2: MapUnordered yields {index, args, result} as they "
      "finish");
  std::map<std::tuple<int, int>, int> result2;
  for (const auto& item : pool.MapUnordered(slow_add, demo.xs, demo.ys)) {
    if (!item.result.ok()) return item.result.status();
    const auto& [x, y] = item.args;
    result2[item.args] = *item.result;
    absl::PrintF("  input #%d (%d, %d) -> %d\n", item.index, x, y,
                 *item.result);
  }
  std::vector<std::string> entries;
  for (const auto& [args, sum] : result2) {
    entries.push_back(absl::StrFormat("(%d, %d): %d", std::get<0>(args),
                                      std::get<1>(args), sum));
  }
  Note(absl::StrCat("result = {", absl::StrJoin(entries, ", "), "}"));
  return absl::OkStatus();
}

// pool.imap(task_helper, zip(xs, ys)): the missing istarmap.
absl::Status LazyIstarmap(ProcessPool& pool, const SlowAdd& slow_add) {
  Heading("5. pool.imap(task_helper, zip(xs, ys)): the missing istarmap");
  Python({
      "def task_helper(seq):",
      "    return task(*seq)",
      "with mp.Pool() as pool:",
      "    for result in pool.imap(task_helper, zip(xs, ys)):",
      "        print(f\"{result=}\")",
  });
  Cpp({
      "auto xs = std::views::iota(1);   // 1, 2, 3, ... never ends",
      "auto ys = std::views::iota(1);",
      "for (int result : pool->Map(slow_add, xs, ys) | std::views::take(6))",
      "  std::cout << \"result=\" << result;",
  });
  // Count how far the (unbounded) input is read.
  size_t reads = 0;
  auto xs = std::views::iota(1) | std::views::transform([&reads](int x) {
              ++reads;
              return x;
            });
  auto ys = std::views::iota(1);
  absl::Time start = absl::Now();
  {
    for (int result : pool.Map(slow_add, xs, ys) | std::views::take(6)) {
      absl::PrintF("  result=%d\n", result);
    }
  }  // Leaving the loop drops the range, which cancels what it read ahead.
  Note(absl::StrCat("6 results in ", Seconds(absl::Now() - start),
                    " from an infinite input, of which Map read only the "
                    "first ",
                    reads,
                    " items: it reads a bounded window ahead of the "
                    "consumer, so memory stays flat."));
  Note(
      "Map is already the lazy, zip-free istarmap: no helper, no zip, any "
      "number of ranges. For inputs that already are tuples there is "
      "pool->Istarmap(slow_add, pairs). Dropping the range cancels the tasks "
      "it read ahead.");
  return absl::OkStatus();
}

// A worker killed mid-task.
absl::Status KilledWorker(const Demo& demo) {
  Heading("6. a worker killed mid-task (BrokenProcessPool)");
  Python({
      "# multiprocessing.Pool: the program hangs forever.",
      "# ProcessPoolExecutor: every pending future fails, and so does all",
      "# later work:",
      "concurrent.futures.process.BrokenProcessPool: A process in the "
      "process pool",
      "was terminated abruptly while the future was running or pending.",
  });
  Cpp({
      "// Only the task the worker was running fails (kAborted); the pool",
      "// starts a replacement worker and keeps serving.",
      "absl::StatusOr<int> r = future.Result();   // or Get(), which throws",
  });

  // A fresh pool, so no read-ahead task left over from section 5 is running.
  absl::StatusOr<ProcessPool> pool = StartPool(demo, 4);
  if (!pool.ok()) return pool.status();
  absl::StatusOr<SlowAdd> slow_add = pool->Task(procpool::math::kSlowAdd);
  if (!slow_add.ok()) return slow_add.status();
  std::vector<int> before = pool->WorkerPids();
  absl::PrintF("  a fresh pool of %d workers, pids %s\n", before.size(),
               Pids(before));

  // On a busy machine the worker may not have started a task yet when it
  // is killed; then nothing fails (its tasks are re-queued) and we try again.
  constexpr int kTasks = 8;
  constexpr int kAttempts = 3;
  if (before.size() <= kAttempts) {
    return absl::InternalError("the pool reports fewer than four workers");
  }
  std::vector<Future<int>> todo;
  std::vector<int> victims;
  int failed = 0;
  for (int attempt = 1; attempt <= kAttempts && failed == 0; ++attempt) {
    todo.clear();
    for (int i = 0; i < kTasks; ++i) {
      todo.push_back(
          pool->Submit(*slow_add, demo.xs[i % 4], demo.ys[i % 4] * 10));
    }
    // Once the first task has finished, every worker is busy with one of
    // its two tasks (10-50 ms each). Python-style wait, like futures.wait().
    procpool::Wait(todo, procpool::FIRST_COMPLETED, absl::Seconds(10));
    // One of the original workers: surely started and serving.
    const int victim = before[attempt];
    victims.push_back(victim);
    absl::PrintF(
        "  submitted %d slow_add tasks; as the first one finished: kill -9 "
        "%d,\n  as the OOM killer would\n",
        kTasks, victim);
    if (::kill(victim, SIGKILL) != 0) {
      return absl::InternalError(absl::StrCat("kill(", victim, ") failed"));
    }

    for (int i = 0; i < kTasks; ++i) {
      // Result(timeout) never throws; the timeout only guards the demo.
      absl::StatusOr<int> r = todo[i].Result(absl::Seconds(10));
      if (absl::IsDeadlineExceeded(r.status())) return r.status();
      std::string call = absl::StrFormat("slow_add(%d, %d)", demo.xs[i % 4],
                                         demo.ys[i % 4] * 10);
      if (r.ok()) {
        absl::PrintF("  #%d %-17s = %d\n", todo[i].index(), call, *r);
      } else {
        ++failed;
        absl::PrintF("  #%d %-17s FAILED:\n       %s\n", todo[i].index(), call,
                     r.status().ToString());
      }
    }
    if (failed == 0) {
      Note(absl::StrCat(
          "no task failed: the killed worker had not started a task yet (a "
          "busy machine), so its tasks were re-queued and ran elsewhere.",
          attempt < kAttempts ? " Once more:" : ""));
    }
  }
  if (failed > 0) {
    Note(absl::StrCat(kTasks - failed, " of ", kTasks,
                      " tasks succeeded: only the task the dead worker was "
                      "running failed (kAborted; SubmitOptions::retries "
                      "would re-run it on another worker). The tasks queued "
                      "behind it were re-queued, not failed."));
  }
  // Get() is Python's .result(): it throws procpool::TaskError.
  for (const Future<int>& f : todo) {
    if (f.status().ok()) continue;
    try {
      f.Get();
    } catch (const procpool::TaskError& e) {
      Note(absl::StrCat("Get() on it throws procpool::TaskError, code ",
                        absl::StatusCodeToString(e.code())));
    }
    break;
  }

  std::vector<int> next;
  absl::Time start = absl::Now();
  for (int r : pool->Map(*slow_add, demo.xs, demo.ys)) next.push_back(r);
  Note(absl::StrCat("the pool still answers: Map(slow_add, xs, ys) -> ",
                    absl::StrJoin(next, " "), " in ",
                    Seconds(absl::Now() - start)));
  std::vector<int> after = pool->WorkerPids();
  std::vector<int> fresh;
  for (int pid : after) {
    if (std::find(before.begin(), before.end(), pid) == before.end()) {
      fresh.push_back(pid);
    }
  }
  Note(absl::StrCat(
      after.size(), " workers again, pids ", Pids(after),
      fresh.empty()
          ? std::string()
          : absl::StrCat(" (", Pids(fresh), " replaced ", Pids(victims), ")")));
  return absl::OkStatus();
}

absl::Status Run() {
  Demo demo;
  absl::StatusOr<std::string> plugin =
      procpool::FindRunfile("plugins/math/libmath.so");
  if (!plugin.ok()) return plugin.status();
  demo.plugin = *plugin;

  absl::PrintF(
      "procpool demo: the examples of \"Two different APIs related to Process "
      "Pool\n"
      "in Python\", in C++.\n"
      "  task: slow_add(x, y) = x + y after a random 10-50 ms sleep (the "
      "article's\n"
      "        task(x, y), which sleeps 1-5 s), from plugins/math/libmath.so\n"
      "  xs = ys = {1, 2, 3, 4}   (Python: range(1, 5))\n");

  absl::Time start = absl::Now();
  absl::StatusOr<ProcessPool> pool = StartPool(demo, 4);
  if (!pool.ok()) return pool.status();
  // Checked against the plugin's manifest: name and signature int(int, int).
  absl::StatusOr<SlowAdd> slow_add = pool->Task(procpool::math::kSlowAdd);
  if (!slow_add.ok()) return slow_add.status();
  absl::PrintF("  pool: %d worker processes, started in %s\n",
               pool->num_workers(), Seconds(absl::Now() - start));

  absl::Status s;
  if (s = PoolStarmap(demo, *pool, *slow_add); !s.ok()) return s;
  if (s = ExecutorMap(demo, *pool, *slow_add); !s.ok()) return s;
  if (s = SubmitAsCompleted(demo, *pool, *slow_add); !s.ok()) return s;
  if (s = WhichInput(demo, *pool, *slow_add); !s.ok()) return s;
  if (s = LazyIstarmap(*pool, *slow_add); !s.ok()) return s;
  if (s = KilledWorker(demo); !s.ok()) return s;

  absl::PrintF("\nAll examples done in %s.\n", Seconds(absl::Now() - start));
  return absl::OkStatus();
}

}  // namespace

int main() {
  absl::Status status;
  try {
    status = Run();
  } catch (const procpool::TaskError& e) {  // from Map iteration or Get()
    status = e.status();
  }
  if (!status.ok()) {
    std::fflush(stdout);
    absl::FPrintF(stderr, "demo: error: %s\n", status.ToString());
    return 1;
  }
  return 0;
}
