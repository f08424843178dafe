#include "tests/testing/backpressure_load.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "plugins/faults/faults.h"

namespace procpool::testing {
namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Resident set of this process, in MiB.
double RssMiB() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  long size = 0, resident = 0;
  const int n = std::fscanf(f, "%ld %ld", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE)) /
         (1024.0 * 1024.0);
}

// A fixed histogram of microseconds: exact below 128 us, then 128 buckets
// per power of two (under 1% apart). Lock-free; allocated once.
class Histogram {
 public:
  static constexpr int kSub = 128;
  static constexpr int kBuckets = kSub + 40 * kSub;

  void Add(int64_t ns) {
    const uint64_t us = ns <= 0 ? 0 : static_cast<uint64_t>(ns) / 1000;
    buckets_[Bucket(us)].fetch_add(1, std::memory_order_relaxed);
  }
  // The value below which `q` of the samples lie (the bucket's low end).
  double Quantile(double q) const {
    uint64_t total = 0;
    for (const auto& b : buckets_) total += b.load(std::memory_order_relaxed);
    if (total == 0) return 0;
    const uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(total - 1));
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += buckets_[i].load(std::memory_order_relaxed);
      if (seen > rank) return static_cast<double>(Low(i));
    }
    return static_cast<double>(Low(kBuckets - 1));
  }
  double Max() const {
    for (int i = kBuckets - 1; i >= 0; --i) {
      if (buckets_[i].load(std::memory_order_relaxed) > 0) return static_cast<double>(Low(i));
    }
    return 0;
  }

 private:
  static int Bucket(uint64_t us) {
    if (us < kSub) return static_cast<int>(us);
    const int e = 63 - std::countl_zero(us);  // >= 7
    const int sub = static_cast<int>((us >> (e - 7)) & (kSub - 1));
    return std::min(kBuckets - 1, kSub + (e - 7) * kSub + sub);
  }
  static uint64_t Low(int b) {
    if (b < kSub) return static_cast<uint64_t>(b);
    const int e = (b - kSub) / kSub + 7;
    const uint64_t sub = static_cast<uint64_t>((b - kSub) % kSub);
    return (kSub + sub) << (e - 7);
  }
  std::atomic<uint64_t> buckets_[kBuckets] = {};
};

// What the done-callbacks share; outlives every callback (the run waits for
// all of them, and each holds a reference).
struct Shared {
  explicit Shared(uint64_t capacity) : counts(capacity) {}
  std::vector<std::atomic<uint8_t>> counts;
  Histogram latency, submit;
  std::atomic<uint64_t> resolved{0}, twice{0}, crashed{0}, succeeded{0},
      cancelled{0}, wrong{0};
  absl::Mutex mu;
  std::string first_wrong ABSL_GUARDED_BY(mu);

  void Resolved(uint64_t i, int64_t t0, bool crash, int task_ms,
                const Future<int>& done) {
    const uint8_t before = counts[i].fetch_add(1, std::memory_order_relaxed);
    if (before == 1) twice.fetch_add(1, std::memory_order_relaxed);
    const absl::StatusOr<int> r = done.Result();
    if (absl::IsCancelled(r.status()) || absl::IsFailedPrecondition(r.status())) {
      cancelled.fetch_add(1, std::memory_order_relaxed);
    } else {
      latency.Add(NowNs() - t0);
      if (crash ? absl::IsAborted(r.status()) : (r.ok() && *r == task_ms)) {
        (crash ? crashed : succeeded).fetch_add(1, std::memory_order_relaxed);
      } else {
        wrong.fetch_add(1, std::memory_order_relaxed);
        absl::MutexLock l(&mu);
        if (first_wrong.empty()) {
          first_wrong = absl::StrCat("task #", i, crash ? " (crash)" : "", ": ",
                                     r.ok() ? absl::StrCat("value ", *r)
                                            : r.status().ToString());
        }
      }
    }
    // Last: the run counts these to know when every callback is done.
    if (before == 0) resolved.fetch_add(1, std::memory_order_release);
  }
};

}  // namespace

std::string LoadResult::Summary() const {
  return absl::StrFormat(
      "%d submitted in %.2f s (%.0f/s); resolved %d (twice: %d), %d ok, %d "
      "crashed as planned, %d cancelled, %d wrong%s; submit-to-result p50 %.0f "
      "us, p99 %.0f us, p999 %.0f us, max %.0f us; time in Submit p50 %.0f us, "
      "p99 %.0f us; RSS %.1f MiB after warm-up, max %.1f MiB (+%.2f MiB, %d "
      "samples)",
      submitted, seconds, submit_per_s, resolved, resolved_twice, succeeded,
      crashed, cancelled, wrong, first_wrong.empty() ? "" : " (" + first_wrong + ")",
      p50_us, p99_us, p999_us, max_us, submit_p50_us, submit_p99_us, rss_base_mib,
      rss_max_mib, rss_growth_mib, rss_samples);
}

LoadResult RunBackpressureLoad(ProcessPool& pool, const LoadOptions& o) {
  LoadResult out;
  absl::StatusOr<TaskHandle<int(int)>> sleep = pool.Task(faults::kSleepMs);
  absl::StatusOr<TaskHandle<int(int)>> segv = pool.Task(faults::kSegfault);
  if (!sleep.ok() || !segv.ok()) {
    out.first_wrong = "the pool lacks the faults plugin";
    out.wrong = 1;
    return out;
  }
  auto shared = std::make_shared<Shared>(o.capacity);
  std::atomic<uint64_t> next{0}, submitted{0};
  std::atomic<bool> stop{false};

  // RSS sampler.
  std::atomic<bool> sampling{true};
  double base = -1, peak = 0;
  int samples = 0;
  const absl::Time start = absl::Now();
  std::thread sampler([&] {
    while (sampling.load()) {
      const double rss = RssMiB();
      if (absl::Now() - start >= o.warmup) {
        if (base < 0) base = rss;
        peak = std::max(peak, rss);
        ++samples;
      }
      absl::SleepFor(o.sample_every);
    }
  });

  std::vector<std::thread> producers;
  for (int p = 0; p < o.producers; ++p) {
    producers.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        const uint64_t i = next.fetch_add(1, std::memory_order_relaxed);
        if (i >= o.capacity) break;
        const bool crash =
            o.crash_every > 0 && i % static_cast<uint64_t>(o.crash_every) ==
                                     static_cast<uint64_t>(o.crash_every - 1);
        const int64_t t0 = NowNs();
        Future<int> f = crash ? pool.Submit(*segv, 0) : pool.Submit(*sleep, o.task_ms);
        shared->submit.Add(NowNs() - t0);
        submitted.fetch_add(1, std::memory_order_relaxed);
        f.AddDoneCallback([shared, i, t0, crash, ms = o.task_ms](const Future<int>& d) {
          shared->Resolved(i, t0, crash, ms, d);
        });
      }
    });
  }
  absl::SleepFor(o.duration);
  stop = true;
  for (auto& t : producers) t.join();
  out.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (o.cancel_at_end) pool.Shutdown(/*wait=*/false, /*cancel_pending=*/true);
  out.submitted = submitted.load();
  const absl::Time drain_end = absl::Now() + o.drain_timeout;
  while (shared->resolved.load(std::memory_order_acquire) < out.submitted &&
         absl::Now() < drain_end) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  sampling = false;
  sampler.join();

  out.resolved = shared->resolved.load(std::memory_order_acquire);
  out.drained = out.resolved == out.submitted;
  out.resolved_twice = shared->twice.load();
  out.crashed = shared->crashed.load();
  out.succeeded = shared->succeeded.load();
  out.cancelled = shared->cancelled.load();
  out.wrong = shared->wrong.load();
  {
    absl::MutexLock l(&shared->mu);
    out.first_wrong = shared->first_wrong;
  }
  out.submit_per_s = static_cast<double>(out.submitted) / out.seconds;
  out.p50_us = shared->latency.Quantile(0.5);
  out.p99_us = shared->latency.Quantile(0.99);
  out.p999_us = shared->latency.Quantile(0.999);
  out.max_us = shared->latency.Max();
  out.submit_p50_us = shared->submit.Quantile(0.5);
  out.submit_p99_us = shared->submit.Quantile(0.99);
  out.rss_base_mib = std::max(0.0, base);
  out.rss_max_mib = peak;
  out.rss_growth_mib = base < 0 ? 0 : peak - base;
  out.rss_samples = samples;
  return out;
}

}  // namespace procpool::testing
