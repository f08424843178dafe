#!/usr/bin/python3
"""procpool's benchmark workloads through Python's own process pools.

Runs each workload with concurrent.futures.ProcessPoolExecutor ("ppe") and
multiprocessing.Pool ("pool"), 2 workers, the platform's default start
method (fork on Linux), and prints one JSON object on stdout:

  {"python": "3.11.2", "start_method": "fork",
   "metrics": {NAME: {"unit": ..., "ppe": [samples], "pool": [samples],
                      "ppe_note": ..., "pool_note": ...}}}

Each sample is one timed run; the caller takes medians. Standard library
only. Used by //bench:compare; can run on its own:
  /usr/bin/python3 bench/python_pools.py [--quick] [--only SUBSTRING]
"""

import argparse
import json
import multiprocessing as mp
import os
import platform
import signal
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, as_completed, wait

WORKERS = 2
now = time.perf_counter

# ---- Tasks (module level, so both pools can pickle them) ----


def noop(x):
    return x


def add(x, y):
    return x + y


def identity(s):
    return s


def spin(n):
    h = 0
    for i in range(n):
        h = (h * 31 + i) & 0xFFFFFFFF
    return h


_PID_PIPE_W = None  # inherited by forked workers


def hold(seconds):
    os.write(_PID_PIPE_W, os.getpid().to_bytes(4, "little"))
    time.sleep(seconds)
    return os.getpid()


# ---- Helpers ----


def ppe():
    return ProcessPoolExecutor(max_workers=WORKERS)


def mp_pool():
    return mp.Pool(WORKERS)


def warm(kind, ex):
    """Make sure every worker exists and has run a task."""
    if kind == "ppe":
        list(ex.map(noop, range(4 * WORKERS)))
    else:
        ex.map(noop, range(4 * WORKERS), chunksize=1)


def rate_samples(fn, items, reps):
    """Runs fn() reps times; samples in items per second."""
    out = []
    for _ in range(reps):
        t0 = now()
        fn()
        out.append(items / (now() - t0))
    return out


class Results:
    def __init__(self):
        self.metrics = {}

    def put(self, name, unit, kind, samples, note=None):
        m = self.metrics.setdefault(name, {"unit": unit})
        m[kind] = samples
        if note:
            m[kind + "_note"] = note

    def log(self, msg):
        print("python_pools: " + msg, file=sys.stderr, flush=True)


# ---- Workloads ----


def bench_startup(r, reps):
    for kind in ("ppe", "pool"):
        samples = []
        for _ in range(reps):
            t0 = now()
            if kind == "ppe":
                ex = ppe()
                ex.submit(noop, 1).result()
                t1 = now()
                ex.shutdown(wait=True)
            else:
                p = mp_pool()
                p.apply(noop, (1,))
                t1 = now()
                p.close()
                p.join()
            samples.append(1e3 * (t1 - t0))
        r.put("startup_2_workers_ms", "ms", kind, samples,
              "create + first result (shutdown excluded)")


def bench_round_trip(r, reps, seconds):
    for kind in ("ppe", "pool"):
        ex = ppe() if kind == "ppe" else mp_pool()
        warm(kind, ex)
        samples = []
        for _ in range(reps):
            n = 0
            t0 = now()
            while True:
                for _ in range(50):
                    if kind == "ppe":
                        ex.submit(noop, n).result()
                    else:
                        ex.apply(noop, (n,))
                    n += 1
                if now() - t0 > seconds:
                    break
            samples.append(1e6 * (now() - t0) / n)
        if kind == "ppe":
            ex.shutdown()
        else:
            ex.close()
            ex.join()
        r.put("round_trip_us", "us", kind, samples)


def bench_map(r, reps, n_big, n_small):
    xs = list(range(n_big))
    ys = list(range(1, n_big + 1))
    for kind in ("ppe", "pool"):
        ex = ppe() if kind == "ppe" else mp_pool()
        warm(kind, ex)

        def run(n, chunksize):
            if kind == "ppe":
                s = sum(ex.map(add, xs[:n], ys[:n], chunksize=chunksize))
            elif chunksize is None:
                s = sum(ex.starmap(add, zip(xs[:n], ys[:n])))
            else:
                s = sum(ex.starmap(add, zip(xs[:n], ys[:n]), chunksize=chunksize))
            assert s == sum(xs[:n]) + sum(ys[:n])

        # Chunksize 1 (the ProcessPoolExecutor default) is slow: fewer items.
        one = rate_samples(lambda: run(n_small, 1), n_small, reps)
        r.put("map_small_tasks_chunksize1_per_s", "tasks/s", kind, one,
              "%d pairs" % n_small)
        if kind == "ppe":
            default, dnote = one, "default chunksize=1, %d pairs" % n_small
        else:
            default = rate_samples(lambda: run(n_big, None), n_big, reps)
            dnote = "default chunksize (len/(4*workers)), %d pairs" % n_big
        r.put("map_small_tasks_default_per_s", "tasks/s", kind, default, dnote)
        best, best_c = None, None
        for c in (1000, 10000, 50000, n_big // (4 * WORKERS)):
            s = rate_samples(lambda: run(n_big, c), n_big, reps)
            r.log("%s map chunksize %d: %.0f tasks/s" % (kind, c, statistics.median(s)))
            if best is None or statistics.median(s) > statistics.median(best):
                best, best_c = s, c
        r.put("map_small_tasks_per_s", "tasks/s", kind, best,
              "best chunksize of 1000/10000/50000/%d: %d, %d pairs"
              % (n_big // (4 * WORKERS), best_c, n_big))
        if kind == "ppe":
            ex.shutdown()
        else:
            ex.close()
            ex.join()


def bench_submit(r, reps, n):
    for kind in ("ppe", "pool"):
        ex = ppe() if kind == "ppe" else mp_pool()
        warm(kind, ex)

        def run():
            if kind == "ppe":
                fs = [ex.submit(noop, i) for i in range(n)]
                s = sum(f.result() for f in as_completed(fs))
            else:
                rs = [ex.apply_async(noop, (i,)) for i in range(n)]
                s = sum(x.get() for x in rs)
            assert s == n * (n - 1) // 2

        r.put("submit_as_completed_per_s", "tasks/s", kind, rate_samples(run, n, reps),
              "submit + as_completed" if kind == "ppe"
              else "apply_async + get in order (Pool has no as_completed)")
        if kind == "ppe":
            ex.shutdown()
        else:
            ex.close()
            ex.join()


PAYLOADS = [("8b", 8), ("1kib", 1 << 10), ("64kib", 64 << 10), ("1mib", 1 << 20),
            ("16mib", 16 << 20), ("64mib", 64 << 20)]


def bench_payload(r, reps, seconds):
    for kind in ("ppe", "pool"):
        ex = ppe() if kind == "ppe" else mp_pool()
        warm(kind, ex)
        for label, size in PAYLOADS:
            data = b"p" * size
            samples = []
            for _ in range(reps):
                n = 0
                t0 = now()
                while n < 1 or now() - t0 < seconds:
                    if kind == "ppe":
                        back = ex.submit(identity, data).result()
                    else:
                        back = ex.apply(identity, (data,))
                    assert len(back) == size
                    n += 1
                samples.append(2 * size * n / (now() - t0) / 1e9)
            r.put("payload_%s_gbps" % label, "GB/s", kind, samples)
        if kind == "ppe":
            ex.shutdown()
        else:
            ex.close()
            ex.join()


def spin_iters_per_us():
    rates = []
    for _ in range(5):
        t0 = now()
        spin(200000)
        rates.append(200000 / ((now() - t0) * 1e6))
    rates.sort()
    return rates[-2]


SPIN_MICROS = [1, 10, 100, 1000, 10000]


def bench_scaling(r, reps, work_us):
    per_us = spin_iters_per_us()
    r.log("spin: %.1f iterations per us" % per_us)
    for kind in ("ppe", "pool"):
        for micros in SPIN_MICROS:
            n = work_us // micros
            iters = max(1, round(per_us * micros))
            rates = {}
            for workers in (1, 2):
                ex = (ProcessPoolExecutor(max_workers=workers) if kind == "ppe"
                      else mp.Pool(workers))
                # Hand-tuned: about 2 ms of work per chunk, and at least 4
                # chunks per worker.
                c = max(1, min(2000 // micros, n // (4 * workers)))
                args = [iters] * n
                if kind == "ppe":
                    list(ex.map(noop, range(4 * workers)))
                    fn = lambda: list(ex.map(spin, args, chunksize=c))
                else:
                    ex.map(noop, range(4 * workers), chunksize=1)
                    fn = lambda: ex.map(spin, args, chunksize=c)
                fn()  # warm
                rates[workers] = rate_samples(fn, n, reps)
                if kind == "ppe":
                    ex.shutdown()
                else:
                    ex.close()
                    ex.join()
            r.put("spin_%dus_1w_tasks_per_s" % micros, "tasks/s", kind, rates[1])
            r.put("spin_%dus_2w_tasks_per_s" % micros, "tasks/s", kind, rates[2])
            # Ratio per repetition pair.
            r.put("scaling_%dus_2v1" % micros, "x", kind,
                  [b / a for a, b in zip(rates[1], rates[2])],
                  "chunksize ~2 ms of work")


def bench_crash(r, reps):
    global _PID_PIPE_W
    rfd, wfd = os.pipe()
    _PID_PIPE_W = wfd

    def read_pid():
        b = b""
        while len(b) < 4:
            b += os.read(rfd, 4 - len(b))
        return int.from_bytes(b, "little")

    # ProcessPoolExecutor: the pool breaks; every future fails with
    # BrokenProcessPool. It never replaces a worker.
    samples = []
    for _ in range(reps):
        ex = ppe()
        warm("ppe", ex)
        fs = [ex.submit(hold, 30) for _ in range(WORKERS)]
        victim = read_pid()
        read_pid()
        t0 = now()
        os.kill(victim, signal.SIGKILL)
        done, _ = wait(fs, timeout=10, return_when=FIRST_COMPLETED)
        t1 = now()
        assert done and next(iter(done)).exception() is not None
        samples.append(1e3 * (t1 - t0))
        for p in list(getattr(ex, "_processes", {}).values()):
            try:
                p.kill()
            except Exception:
                pass
        ex.shutdown(wait=True, cancel_futures=True)
    r.put("crash_to_error_ms", "ms", "ppe", samples,
          "BrokenProcessPool: the whole pool fails")
    r.put("crash_to_replacement_ms", "ms", "ppe", [],
          "never: the pool is broken for good")

    # multiprocessing.Pool: the task's result never arrives (it hangs); the
    # pool's maintenance thread starts a replacement worker.
    err_samples, rep_samples = [], []
    for _ in range(reps):
        p = mp_pool()
        warm("pool", p)
        rs = [p.apply_async(hold, (30,)) for _ in range(WORKERS)]
        victim = read_pid()
        read_pid()
        t0 = now()
        os.kill(victim, signal.SIGKILL)
        t_rep = None
        while now() - t0 < 10:
            pids = [w.pid for w in p._pool if w.is_alive()]
            if len(pids) == WORKERS and victim not in pids:
                t_rep = now()
                break
            time.sleep(20e-6)
        if t_rep is not None:
            rep_samples.append(1e3 * (t_rep - t0))
        # Does the killed task's result ever fail? Give it half a second.
        try:
            rs[0].wait(0.5)
            failed = [x for x in rs if x.ready()]
        except Exception:
            failed = []
        if failed:
            err_samples.append(1e3 * (now() - t0))
        p.terminate()
        p.join()
    r.put("crash_to_error_ms", "ms", "pool", err_samples,
          None if err_samples else "never: the killed task's result hangs forever")
    r.put("crash_to_replacement_ms", "ms", "pool", rep_samples,
          "new worker process listed in Pool._pool")
    os.close(rfd)
    os.close(wfd)
    _PID_PIPE_W = None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, smaller inputs")
    ap.add_argument("--only", default="", help="run only workloads whose name contains this")
    args = ap.parse_args()
    q = args.quick
    reps = 2 if q else 5
    r = Results()
    steps = [
        ("startup", lambda: bench_startup(r, 5 if q else 15)),
        ("round_trip", lambda: bench_round_trip(r, reps, 0.1 if q else 0.3)),
        ("map", lambda: bench_map(r, 2 if q else 3, 200_000 if q else 1_000_000,
                                  5_000 if q else 10_000)),
        ("submit", lambda: bench_submit(r, 2 if q else 3, 20_000)),
        ("payload", lambda: bench_payload(r, 2 if q else 3, 0.1 if q else 0.3)),
        ("scaling", lambda: bench_scaling(r, 2 if q else 3, 50_000 if q else 200_000)),
        ("crash", lambda: bench_crash(r, 3 if q else 5)),
    ]
    for name, fn in steps:
        if args.only and args.only not in name:
            continue
        t0 = now()
        fn()
        r.log("%s done in %.1f s" % (name, now() - t0))
    json.dump({"python": platform.python_version(),
               "executable": sys.executable,
               "start_method": mp.get_start_method(),
               "metrics": r.metrics}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
