#!/usr/bin/python3
"""procpool vs Python's process pools vs the kernel's floor, in one table.

    bazel run -c opt //bench:compare [-- --json PATH] [-- --quick]

Runs the Google Benchmark binaries of bench/ (JSON output, several
repetitions), bench/python_pools.py (the same workloads through
concurrent.futures.ProcessPoolExecutor and multiprocessing.Pool) and the
raw-kernel floors that live in the benchmark binaries, then prints one table:
medians, the spread of the repetitions, and the ratios. Standard library
only.

Ratios: "vs PPE" and "vs Pool" say how many times better procpool is (> 1:
procpool wins, whichever way the unit points); "x floor" says how many times
worse than the floor procpool is (1.0: at the floor).
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Benchmark binary -> extra flags. Each binary runs once with
# --benchmark_repetitions; the iteration counts are chosen so that the whole
# command stays well under 10 minutes on 2 cores.
BINARIES = {
    "machine_bench": ["--benchmark_min_time=0.2"],
    "startup_bench": ["--benchmark_min_time=0.3"],
    "round_trip_bench": ["--benchmark_min_time=0.3"],
    # Chunksize 1 over 1M pairs takes ~25 s a run: compare uses 100,000.
    "map_bench": ["--benchmark_min_time=0.01",
                  "--benchmark_filter=BM_MapAdd/chunksize:0/|BM_MapAdd/chunksize:1/pairs:100000/"
                  "|BM_MapAddSandboxed/|BM_Socketpair"],
    "submit_bench": ["--benchmark_min_time=0.2"],
    "payload_bench": ["--benchmark_min_time=0.2"],  # at most 3 repetitions: see REPS_CAP
    "scaling_bench": ["--benchmark_min_time=0.01"],
    "crash_recovery_bench": [],
    # Backpressure (issue 16, part 3): one 30 s run under max_pending and a
    # 0.5 s unbounded one (a single repetition: see REPS_CAP).
    "backpressure_bench": [],
}

# Binaries whose repetitions are capped: an identity call of 64 MiB takes
# seconds while procpool copies payloads through fresh memory.
REPS_CAP = {"payload_bench": 3, "backpressure_bench": 1}

SPIN_MICROS = [1, 10, 100, 1000, 10000]
PAYLOADS = [("8b", 8), ("1kib", 1 << 10), ("64kib", 64 << 10), ("1mib", 1 << 20),
            ("16mib", 16 << 20), ("64mib", 64 << 20)]


from compare_lib import (  # noqa: E402  (the directory of this script is on sys.path)
    log, runfiles_root, run_binary, Bench, med, spread, Row, fmt_num, fmt_cell, fmt_ratio, TIME_SCALE)


def build_rows(b, py):
    pm = py.get("metrics", {}) if py else {}

    def p(name, kind):
        return pm.get(name, {}).get(kind, [])

    def pnote(name, kind):
        return pm.get(name, {}).get(kind + "_note")

    def mul(xs, k):
        return [x * k for x in xs]

    def ratios(a, c):
        return [y / x for x, y in zip(a, c)]

    rows = []
    ips = "items_per_second"
    map_auto = b.samples("BM_MapAdd/chunksize:0/pairs:1000000/real_time", ips)
    map_one = b.samples("BM_MapAdd/chunksize:1/pairs:100000/real_time", ips)
    floor_batched = b.samples(
        "BM_SocketpairSmallMessages/batch:4096/children:2/records:1000000/real_time", ips)
    floor_single = b.samples(
        "BM_SocketpairSmallMessages/batch:1/children:2/records:100000/real_time", ips)

    def best_python_2x(r):
        best = max([x for x in (med(r.ppe), med(r.pool)) if x is not None] or [0])
        return med(r.procpool) >= 10e6 and med(r.procpool) >= 2 * best

    caller_cpu = {"caller_cpu_us_per_task": med(b.samples(
        "BM_MapAdd/chunksize:0/pairs:1000000/real_time", "caller_cpu_us_per_task"))}
    rows.append(Row("map_small_tasks_per_s", "tasks/s", True, map_auto, floor_batched,
                    p("map_small_tasks_per_s", "ppe"), p("map_small_tasks_per_s", "pool"),
                    "2 forked children fed (x, y) records over socketpairs, 4096 per write",
                    "add over 1M pairs, 2 workers; procpool automatic batching; Python: best "
                    "hand-tuned chunksize (%s; %s)" % (pnote("map_small_tasks_per_s", "ppe"),
                                                       pnote("map_small_tasks_per_s", "pool")),
                    ("≥ 10 M/s and ≥ 2x Python's best chunksize", best_python_2x), caller_cpu))
    rows.append(Row("map_small_tasks_default_per_s", "tasks/s", True, map_auto, floor_batched,
                    p("map_small_tasks_default_per_s", "ppe"),
                    p("map_small_tasks_default_per_s", "pool"),
                    "as above",
                    "no chunksize given anywhere (PPE: %s; Pool: %s)"
                    % (pnote("map_small_tasks_default_per_s", "ppe"),
                       pnote("map_small_tasks_default_per_s", "pool"))))
    sandbox_run = "BM_MapAddSandboxed/pairs:1000000/rounds:4/min_time:0.500/manual_time"
    rows.append(Row("map_small_tasks_sandboxed_per_s", "tasks/s", True,
                    b.samples(sandbox_run, "sandboxed_per_s"),
                    b.samples(sandbox_run, "plain_per_s"),
                    floor_note="the same map on an unconfined pool, alternating with it",
                    notes="add over 1M pairs, 2 workers, automatic batching, "
                          "PoolOptions::sandbox (seccomp, Landlock, capabilities); 4 maps "
                          "on each pool per repetition, in the order ABBA",
                    target=("≥ 95% of the unsandboxed map",
                            lambda r: med(r.procpool) >= 0.95 * med(r.floor))))
    rows.append(Row("map_small_tasks_chunksize1_per_s", "tasks/s", True, map_one, floor_single,
                    p("map_small_tasks_chunksize1_per_s", "ppe"),
                    p("map_small_tasks_chunksize1_per_s", "pool"),
                    "one (x, y) record per write, 32 in flight per child",
                    "chunksize 1; procpool 100,000 pairs, Python %s"
                    % pnote("map_small_tasks_chunksize1_per_s", "ppe")))
    rows.append(Row("submit_as_completed_per_s", "tasks/s", True,
                    b.samples("BM_SubmitAsCompleted/tasks:20000/real_time", ips), floor_single,
                    p("submit_as_completed_per_s", "ppe"), p("submit_as_completed_per_s", "pool"),
                    "one record per write, 32 in flight per child",
                    "20,000 Submit(noop) then AsCompleted; Pool: %s"
                    % pnote("submit_as_completed_per_s", "pool"),
                    ("≥ 1 M/s", lambda r: med(r.procpool) >= 1e6),
                    {"submit_only_per_s": med(b.samples("BM_SubmitOnly/tasks:20000/real_time", ips))}))
    rows.append(Row("round_trip_us", "us", False,
                    mul(b.samples("BM_RoundTripNoop/workers:2/real_time", "seconds"), 1e6),
                    mul(b.samples("BM_SocketpairPingPong/real_time", "seconds"), 1e6),
                    p("round_trip_us", "ppe"), p("round_trip_us", "pool"),
                    "4-byte ping-pong between 2 processes over a socketpair",
                    "Submit(noop).Get() in a loop, 2 workers",
                    ("≤ 1.2x the socketpair ping-pong", lambda r: r.x_floor() <= 1.2),
                    {"floor_via_thread_us": med(mul(b.samples(
                        "BM_SocketpairPingPongViaThread/real_time", "seconds"), 1e6))}))
    rows.append(Row("round_trip_1_worker_us", "us", False,
                    mul(b.samples("BM_RoundTripNoop/workers:1/real_time", "seconds"), 1e6),
                    mul(b.samples("BM_SocketpairPingPong/real_time", "seconds"), 1e6),
                    floor_note="as above", notes="as above, 1 worker"))
    rows.append(Row("startup_2_workers_ms", "ms", False,
                    b.samples("BM_PoolStart/workers:2/zygote:0/real_time", "first_result_ms"),
                    mul(b.samples("BM_PosixSpawnUntilReady/processes:2/real_time", "seconds"), 1e3),
                    p("startup_2_workers_ms", "ppe"), p("startup_2_workers_ms", "pool"),
                    "posix_spawn 2 tiny helpers until each writes a byte, and reap them",
                    "Create() of 2 workers + first noop result (shutdown not included)",
                    ("≤ 1.5 ms", lambda r: med(r.procpool) <= 1.5),
                    {"fork_2_until_ready_ms": med(mul(b.samples(
                        "BM_ForkUntilReady/processes:2/real_time", "seconds"), 1e3)),
                     "spawn_worker_help_ms": med(mul(b.samples(
                         "BM_PosixSpawnWorkerHelp/real_time", "seconds"), 1e3))}))
    rows.append(Row("startup_shutdown_2_workers_ms", "ms", False,
                    mul(b.samples("BM_PoolStart/workers:2/zygote:0/real_time", "seconds"), 1e3),
                    mul(b.samples("BM_PosixSpawnUntilReady/processes:2/real_time", "seconds"), 1e3),
                    floor_note="as above",
                    notes="as above, plus Shutdown() and the destructor"))
    rows.append(Row("startup_2_workers_zygote_ms", "ms", False,
                    b.samples("BM_PoolStart/workers:2/zygote:1/real_time", "first_result_ms"),
                    mul(b.samples("BM_PosixSpawnUntilReady/processes:2/real_time", "seconds"), 1e3),
                    floor_note="as above",
                    notes="as startup_2_workers_ms with StartMethod::kZygote: the template "
                          "is spawned and loads the plugins, then forks the 2 workers",
                    target=("≤ 1.5x the floor", lambda r: r.x_floor() <= 1.5)))
    pss = "BM_SharedTablesPss/zygote:%d/iterations:3/real_time"
    for method, arg in (("spawn", 0), ("zygote", 1)):
        rows.append(Row("shared_tables_pss_%s_mib" % method, "MiB", False,
                        b.samples(pss % arg, "pss_total_mib"), [200.0] * 3,
                        floor_note="the tables themselves: 200 MiB",
                        notes="total PSS of a 2-worker pool whose preload builds 200 MiB of "
                              "read-only tables that each worker then reads (StartMethod::k%s)"
                              % method.capitalize(),
                        target=(("about 200 MiB in total, not 2 x 200",
                                 lambda r: med(r.procpool) <= 1.2 * 200)
                                if method == "zygote" else None)))
    for label, size in PAYLOADS:
        echo = [max(x, y) for x, y in zip(
            b.samples("BM_SocketpairEcho/bytes:%d/sockbuf:0/real_time" % size, "bytes_per_second"),
            b.samples("BM_SocketpairEcho/bytes:%d/sockbuf:4194304/real_time" % size,
                      "bytes_per_second"))]
        memcpy = b.samples("BM_MemcpyTwice/bytes:%d" % size, "bytes_per_second")
        shared = b.samples("BM_SharedMemoryEcho/bytes:%d/fresh_memfd:0/real_time" % size,
                           "bytes_per_second")
        fresh = (b.samples("BM_SharedMemoryEcho/bytes:%d/fresh_memfd:1/real_time" % size,
                           "bytes_per_second") if size <= (16 << 20) else [])
        target = None
        if label in ("1mib", "16mib"):
            target = ("≥ 5 GB/s per direction", lambda r: med(r.procpool) >= 5.0)
        rows.append(Row("payload_%s_gbps" % label, "GB/s", True,
                        mul(b.samples("BM_PayloadIdentity/bytes:%d/real_time" % size,
                                      "bytes_per_second"), 1e-9),
                        mul(echo, 1e-9),
                        p("payload_%s_gbps" % label, "ppe"), p("payload_%s_gbps" % label, "pool"),
                        "echo over a socketpair (best of default and 4 MiB buffers)",
                        "identity(string) one call at a time, 1 worker; bytes each way per "
                        "second (1 GB = 1e9 bytes)",
                        target, {"floor_memcpy": med(mul(memcpy, 1e-9)),
                                 "floor_shared_region": med(mul(shared, 1e-9)),
                                 "floor_fresh_memfd": med(mul(fresh, 1e-9))}))
    for us in SPIN_MICROS:
        one = b.samples("BM_ScalingSpin/micros:%d/workers:1/real_time" % us, ips)
        two = b.samples("BM_ScalingSpin/micros:%d/workers:2/real_time" % us, ips)
        f1 = b.samples("BM_ProcessesSpin/micros:%d/workers:1/real_time" % us, ips)
        f2 = b.samples("BM_ProcessesSpin/micros:%d/workers:2/real_time" % us, ips)
        spin_target = None
        if us >= 10:
            spin_target = ("≥ 95% of the floor",
                           lambda r: med(r.procpool) >= 0.95 * med(r.floor))
        rows.append(Row("spin_%dus_2w_tasks_per_s" % us, "tasks/s", True, two, f2,
                        p("spin_%dus_2w_tasks_per_s" % us, "ppe"),
                        p("spin_%dus_2w_tasks_per_s" % us, "pool"),
                        "2 forked processes running the same tasks, no communication",
                        "CPU-bound tasks of ~%d us, 2 workers (Python: a Python loop of the "
                        "same duration, chunksize ~2 ms of work)" % us,
                        spin_target,
                        extra={"procpool_1w": med(one),
                               # The caller's whole process (consumer and
                               # I/O threads), from getrusage in the benchmark.
                               "caller_cpu_us_per_task": med(b.samples(
                                   "BM_ScalingSpin/micros:%d/workers:2/real_time" % us,
                                   "caller_cpu_us_per_task"))}))
        target = None
        if us == 10:
            target = ("≥ 1.9x with 2 workers", lambda r: med(r.procpool) >= 1.9)
        rows.append(Row("scaling_%dus_2v1" % us, "x", True, ratios(one, two), ratios(f1, f2),
                        p("scaling_%dus_2v1" % us, "ppe"), p("scaling_%dus_2v1" % us, "pool"),
                        "the same 2-vs-1 ratio for bare processes",
                        "throughput with 2 workers / with 1", target))
    crash = "BM_CrashRecovery/zygote:0/slow_plugin:0/iterations:20/manual_time"
    crash_of = "BM_CrashRecovery/zygote:%d/slow_plugin:%d/iterations:20/manual_time"
    rows.append(Row("crash_to_error_ms", "ms", False,
                    mul(b.samples(crash, "seconds"), 1e3),
                    mul(b.samples("BM_KillToEof/iterations:50/manual_time", "seconds"), 1e3),
                    p("crash_to_error_ms", "ppe"), p("crash_to_error_ms", "pool"),
                    "SIGKILL of a forked child until its socketpair reads EOF",
                    "SIGKILL of a busy worker until its future has failed (PPE: %s; Pool: %s)"
                    % (pnote("crash_to_error_ms", "ppe"), pnote("crash_to_error_ms", "pool")),
                    ("≤ 1 ms", lambda r: med(r.procpool) <= 1.0)))
    own = "BM_WorkerKillToEof/iterations:30/manual_time"
    rows.append(Row("crash_to_error_own_floor_ms", "ms", False,
                    b.samples(own, "pool_ms"), mul(b.samples(own, "seconds"), 1e3),
                    floor_note="the same deaths: SIGKILL of the worker until its own "
                               "descriptors read EOF (its teardown; nothing can learn of "
                               "the death sooner)",
                    notes="pool of 1 worker: SIGKILL of a busy worker until its future "
                          "has failed, paired with the EOF of the same death"))
    respawn = mul(b.samples("BM_KillToRespawnReady/iterations:50/manual_time", "seconds"), 1e3)
    rows.append(Row("crash_to_replacement_ms", "ms", False,
                    b.samples(crash, "to_pids_ms"), respawn,
                    p("crash_to_replacement_ms", "ppe"), p("crash_to_replacement_ms", "pool"),
                    "kill -> EOF -> posix_spawn a tiny helper until it writes a byte",
                    "SIGKILL until WorkerPids() lists 2 workers again (PPE: %s; Pool: %s)"
                    % (pnote("crash_to_replacement_ms", "ppe"),
                       pnote("crash_to_replacement_ms", "pool")),
                    ("≤ 1.5 ms", lambda r: med(r.procpool) <= 1.5)))
    rows.append(Row("crash_to_replacement_serving_ms", "ms", False,
                    b.samples(crash, "to_serving_ms"), respawn,
                    floor_note="as above",
                    notes="SIGKILL until a task submitted after it came back from the replacement",
                    target=("≤ 1.5 ms (stricter reading: replacement serving)",
                            lambda r: med(r.procpool) <= 1.5)))
    rows.append(Row("crash_to_replacement_serving_zygote_ms", "ms", False,
                    b.samples(crash_of % (1, 0), "to_serving_ms"), respawn,
                    floor_note="as above",
                    notes="as above with StartMethod::kZygote (the replacement is forked "
                          "from the template)",
                    target=("≤ 1.5x the floor", lambda r: r.x_floor() <= 1.5)))
    for method, arg in (("spawn", 0), ("zygote", 1)):
        rows.append(Row("slow_plugin_replacement_serving_%s_ms" % method, "ms", False,
                        b.samples(crash_of % (arg, 1), "to_serving_ms"), respawn,
                        floor_note="as above",
                        notes="crash_to_replacement_serving_ms when the pool also loads a "
                              "plugin that takes 300 ms to load (StartMethod::k%s)"
                              % method.capitalize(),
                        target=(("no slower than a fast plugin's replacement (kZygote)",
                                 lambda r: med(r.procpool) <= 1.2 * med(
                                     b.samples(crash_of % (1, 0), "to_serving_ms")))
                                if method == "zygote" else None)))
    rows.extend(backpressure_rows(b))
    return rows


def backpressure_rows(b):
    """Issue 16, part 3: 8 producers submitting as fast as they can into 2
    workers of 1 ms tasks (1% segfaulting), PoolOptions::max_pending = 64,
    30 s (bench/backpressure_bench.cc). Latency is from the call to Submit
    (its wait for a slot included) until the result."""
    run = "BM_BackpressureLoad/iterations:1/manual_time"
    free = "BM_UnboundedLoad/iterations:1/manual_time"
    load = "8 producers -> 2 workers of 1 ms tasks, 1% crashing, max_pending 64, 30 s"
    rows = []
    for q in ("p50", "p99", "p999"):
        rows.append(Row("backpressure_%s_us" % q, "us", False, b.samples(run, q + "_us"),
                        notes=load + ": submit-to-result latency, wait for a slot included"))
    rows.append(Row("backpressure_rss_growth_mib", "MiB", False,
                    b.samples(run, "rss_growth_mib"),
                    notes=load + ": caller's RSS, highest sample minus the one after 1 s "
                                 "(every task resolved exactly once)",
                    target=("≤ 16 MiB (flat)", lambda r: med(r.procpool) <= 16)))
    rows.append(Row("backpressure_unbounded_rss_growth_mib", "MiB", False,
                    b.samples(free, "rss_growth_mib"),
                    notes="the same producers with max_pending = 0, for 0.5 s (at most 2^20 tasks)"))
    rows.append(Row("backpressure_producers_vs_workers_x", "x", True,
                    [u / max(1e-9, c) for u, c in zip(b.samples(free, "submitted_per_s"),
                                                      b.samples(run, "submitted_per_s"))],
                    notes="how many times faster the producers submit unbounded than "
                          "the workers drain (the issue asks for >= 10)",
                    target=(">= 10", lambda r: med(r.procpool) >= 10)))
    return rows


def print_table(rows, out):
    head = ["name", "unit", "procpool", "Python PPE", "Python Pool", "floor",
            "vs PPE", "vs Pool", "x floor", "target"]
    table = [head]
    for r in rows:
        met = r.met()
        table.append([
            r.name, r.unit, fmt_cell(r.procpool),
            fmt_cell(r.ppe, _note(r, "ppe")),
            fmt_cell(r.pool, _note(r, "pool")), fmt_cell(r.floor),
            fmt_ratio(r.better(r.ppe)), fmt_ratio(r.better(r.pool)), fmt_ratio(r.x_floor()),
            "" if met is None else ("met" if met else "MISSED"),
        ])
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for i, row in enumerate(table):
        cells = [c.ljust(widths[k]) if k < 2 else c.rjust(widths[k]) for k, c in enumerate(row)]
        out.write("  ".join(cells).rstrip() + "\n")
        if i == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


_PY_NOTES = {}


def print_details(rows, out):
    by = {r.name: r for r in rows}
    out.write("\npayload paths, GB/s each way (floors: socketpair echo; one shared region "
              "reused; a fresh memfd per message; memcpy x2):\n")
    table = [["payload", "procpool", "socketpair", "shared region", "fresh memfd", "memcpy"]]
    for label, _ in PAYLOADS:
        r = by["payload_%s_gbps" % label]
        table.append([label, fmt_num(med(r.procpool)), fmt_num(med(r.floor)),
                      fmt_num(r.extra["floor_shared_region"]),
                      fmt_num(r.extra["floor_fresh_memfd"]), fmt_num(r.extra["floor_memcpy"])])
    _print_grid(table, out)
    r = by["round_trip_us"]
    out.write("\nround trip, us: procpool %s; socketpair ping-pong %s; the same ping-pong relayed "
              "through a second thread of the caller %s\n"
              % (fmt_num(med(r.procpool)), fmt_num(med(r.floor)),
                 fmt_num(r.extra["floor_via_thread_us"])))
    r = by["startup_2_workers_ms"]
    out.write("starting 2 processes, ms: procpool %s; posix_spawn of a static helper %s; "
              "fork() %s; posix_spawn of procpool_worker --help (load and exit, 1 process) %s\n"
              % (fmt_num(med(r.procpool)), fmt_num(med(r.floor)),
                 fmt_num(r.extra["fork_2_until_ready_ms"]),
                 fmt_num(r.extra["spawn_worker_help_ms"])))
    out.write("CPU of the calling process (caller + I/O threads) per task, us: map of add %s; "
              % fmt_num(by["map_small_tasks_per_s"].extra["caller_cpu_us_per_task"]))
    out.write("; ".join("spin %d us %s" % (us, fmt_num(
        by["spin_%dus_2w_tasks_per_s" % us].extra["caller_cpu_us_per_task"]))
        for us in SPIN_MICROS) + "\n")


def _print_grid(table, out):
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for i, row in enumerate(table):
        cells = [c.ljust(widths[k]) if k == 0 else c.rjust(widths[k]) for k, c in enumerate(row)]
        out.write("  ".join(cells).rstrip() + "\n")
        if i == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


def _note(r, kind):
    return _PY_NOTES.get((r.name, kind))


def run_mpi(reps, raw_dir):
    """The MPI backend beside the local one (//bench:mpi_bench under mpirun,
    3 ranks), over shared memory and over TCP on loopback: per transport,
    {"median": {run name: median aggregate}, "samples": {run name: [one
    benchmark per repetition]}}. None when mpirun is not installed."""
    if not shutil.which("mpirun"):
        log("mpirun not found: no MPI rows (scripts/setup.sh installs openmpi-bin)")
        return None
    bench = os.path.join(runfiles_root(), "bench")
    env = dict(os.environ, MPI_BENCH=os.path.join(bench, "mpi_bench"))
    out = {}
    for transport, mca in (("shm", []), ("tcp", ["--mca", "btl", "tcp,self"])):
        cmd = [os.path.join(bench, "mpi_bench.sh")] + mca + [
            # At least 2 repetitions: a single one has no median aggregate.
            "--", "--benchmark_format=json", "--benchmark_repetitions=%d" % max(2, reps),
            "--benchmark_min_time=0.2"]
        t0 = time.monotonic()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env)
        log("mpi_bench (%s): %.1f s" % (transport, time.monotonic() - t0))
        if p.returncode != 0:
            sys.stderr.write(p.stderr[-4000:])
            raise SystemExit("compare: mpi_bench (%s) failed with code %d"
                             % (transport, p.returncode))
        if raw_dir:
            with open(os.path.join(raw_dir, "mpi_bench_%s.json" % transport), "w") as f:
                f.write(p.stdout)
        data = json.loads(p.stdout)
        samples = {}
        for b in data["benchmarks"]:
            if b.get("run_type") == "iteration":
                samples.setdefault(b["run_name"], []).append(b)
        out[transport] = {"median": {b["run_name"]: b for b in data["benchmarks"]
                                     if b.get("aggregate_name") == "median"},
                          "samples": samples}
    return out


def build_mpi_rows(res):
    """The issue's MPI targets, as rows of the JSON (the local pool of the
    same run, 2 workers in rank 0's process, is the floor)."""
    if not res:
        return []

    def ips(transport, name):
        return [float(b["items_per_second"])
                for b in res[transport]["samples"].get(name + "/real_time", [])]

    def us(xs):
        return [1e6 / x for x in xs if x]

    tcp_rt = med(us(ips("tcp", "BM_MpiRoundTripNoop")))
    tcp_map = med(ips("tcp", "BM_MpiMapNoop/tasks:20000"))
    return [
        Row("mpi_round_trip_us", "us", False,
            us(ips("shm", "BM_MpiRoundTripNoop")), us(ips("shm", "BM_LocalRoundTripNoop")),
            floor_note="the local round trip (2 workers) of the same run",
            notes="Submit(noop).Get() in a loop over MPI shared memory: rank 0 + 2 agents "
                  "of 1 worker; TCP (loopback) in mpi_tcp_us",
            target=("≤ 3x the local round trip", lambda r: r.x_floor() <= 3),
            extra={"mpi_tcp_us": tcp_rt}),
        Row("mpi_map_small_tasks_per_s", "tasks/s", True,
            ips("shm", "BM_MpiMapNoop/tasks:20000"), ips("shm", "BM_LocalMapNoop/tasks:20000"),
            floor_note="the local map (2 workers) of the same run",
            notes="Map of 20,000 no-ops over MPI shared memory: rank 0 + 2 agents of "
                  "1 worker; TCP (loopback) in mpi_tcp_per_s",
            target=("≥ 50% of the local rate", lambda r: med(r.procpool) >= 0.5 * med(r.floor)),
            extra={"mpi_tcp_per_s": tcp_map}),
    ]


def print_mpi(res, mpi_rows, out):
    out.write("\nMPI backend (PoolBackend::kMpi, docs/DISTRIBUTED.md): rank 0 + 2 agent ranks of "
              "1 worker each, vs a local pool of 2 workers in the same process; medians\n")
    rows = [("round trip, us", "RoundTripNoop", lambda b: 1e6 / b["items_per_second"]),
            ("map of 20000 no-ops, tasks/s", "MapNoop/tasks:20000",
             lambda b: b["items_per_second"]),
            ("map of 100 us tasks, tasks/s", "MapSpin/task_us:100",
             lambda b: b["items_per_second"])]
    grid = [["", "local", "MPI, shared memory", "MPI, TCP (loopback)"]]
    for label, name, f in rows:
        cells = [label]
        for transport, kind in (("shm", "Local"), ("shm", "Mpi"), ("tcp", "Mpi")):
            b = res[transport]["median"].get("BM_%s%s/real_time" % (kind, name))
            cells.append(fmt_num(f(b)) if b else "-")
        grid.append(cells)
    _print_grid(grid, out)
    for r in mpi_rows:
        met = r.met()
        out.write("%s: %s %s (floor %s; x floor %s); target %s: %s\n" % (
            r.name, fmt_cell(r.procpool), r.unit, fmt_num(med(r.floor)),
            fmt_ratio(r.x_floor()), r.target[0],
            "-" if met is None else ("met" if met else "MISSED")))


def machine():
    info = {"nproc": os.cpu_count(), "kernel": platform.release(),
            "date": datetime.datetime.now().isoformat(timespec="seconds")}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        info["loadavg_start"] = open("/proc/loadavg").read().split()[:3]
    except OSError:
        pass
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON to PATH")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per benchmark (default 5)")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, for a smoke test")
    ap.add_argument("--skip-python", action="store_true", help="leave the Python columns empty")
    ap.add_argument("--raw-dir", metavar="DIR", help="keep every raw JSON output in DIR")
    ap.add_argument("--skip-main-job", action="store_true",
                    help="leave out poolrun's main job on real pages (bench/main_job.py)")
    ap.add_argument("--main-job-only", action="store_true",
                    help="run only poolrun's main job section")
    args = ap.parse_args()
    if args.main_job_only:
        main_job_section(args, sys.stdout)
        return

    # Relative paths are the caller's, not the runfiles directory's.
    base = os.environ.get("BUILD_WORKING_DIRECTORY", os.getcwd())
    resolve = lambda p: p if p is None or os.path.isabs(p) else os.path.join(base, p)
    json_path, raw_dir = resolve(args.json), resolve(args.raw_dir)
    if raw_dir:
        os.makedirs(raw_dir, exist_ok=True)
    reps = 2 if args.quick else args.reps

    t_start = time.monotonic()
    m = machine()
    log("machine: %s, %s cores, load %s" % (m.get("cpu"), m["nproc"], m.get("loadavg_start")))
    b = Bench()
    for name, flags in BINARIES.items():
        b.add(run_binary(name, min(reps, REPS_CAP.get(name, reps)), flags, raw_dir))
    py = None
    if not args.skip_python:
        cmd = ["/usr/bin/python3", os.path.join(runfiles_root(), "bench", "python_pools.py")]
        if args.quick:
            cmd.append("--quick")
        t0 = time.monotonic()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        log("python_pools.py: %.1f s" % (time.monotonic() - t0))
        if p.returncode != 0:
            raise SystemExit("compare: python_pools.py failed with code %d" % p.returncode)
        py = json.loads(p.stdout)
        if raw_dir:
            with open(os.path.join(raw_dir, "python_pools.json"), "w") as f:
                f.write(p.stdout)
        for name, metric in py["metrics"].items():
            for kind in ("ppe", "pool"):
                if metric.get(kind + "_note"):
                    _PY_NOTES[(name, kind)] = metric[kind + "_note"]
    rows = build_rows(b, py)
    mpi = run_mpi(reps, raw_dir)
    mpi_rows = build_mpi_rows(mpi)
    m["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    m["seconds"] = round(time.monotonic() - t_start, 1)

    out = sys.stdout
    out.write("\nprocpool vs Python %s pools (%s start method) vs kernel floors\n"
              % (py["python"] if py else "-", py["start_method"] if py else "-"))
    out.write("machine: %s, %s cores (nproc), kernel %s, load %s -> %s, %s\n"
              % (m.get("cpu"), m["nproc"], m["kernel"], " ".join(m.get("loadavg_start", [])),
                 " ".join(m["loadavg_end"]), m["date"]))
    mc = {
        "syscall_ns": 1e9 * med(b.samples("BM_SyscallGetppid", "seconds")),
        # CPU of one round of thread wake-ups (wake a peer, be woken back,
        # and with a gap wake from a sleep), cores idle or busy.
        "wakeup_round_us": {
            key: med(b.samples("BM_ThreadWakeup/cores_busy:%d/gap_us:%d/real_time" % args,
                               "cpu_us_per_round"))
            for key, args in (("idle", (0, 0)), ("busy", (1, 0)),
                              ("busy_1ms_gap", (1, 1000)), ("busy_10ms_gap", (1, 10000)))},
        "page_fault_us": 1e6 / med(b.samples("BM_FirstTouchPage/madv_hugepage:0/real_time",
                                             "items_per_second")),
        "page_fault_thp_us": 1e6 / med(b.samples(
            "BM_FirstTouchPage/madv_hugepage:1/real_time", "items_per_second")),
    }
    m.update(mc)
    out.write("this machine charges: %.0f ns for a trivial system call (getppid); %.1f us per "
              "first touch of a fresh 4 KiB page (%.2f us per 4 KiB with MADV_HUGEPAGE)\n"
              % (mc["syscall_ns"], mc["page_fault_us"], mc["page_fault_thp_us"]))
    w = mc["wakeup_round_us"]
    out.write("a round of thread wake-ups (wake a peer, be woken back) costs %.1f us of CPU "
              "with idle cores, %.1f us with busy ones, %.1f / %.1f us when the thread "
              "sleeps 1 / 10 ms between rounds (as a pool's caller does between tasks that "
              "long)\n" % (w["idle"], w["busy"], w["busy_1ms_gap"], w["busy_10ms_gap"]))
    out.write("medians of %d procpool repetitions (payload: %d); ±: half the range of the "
              "repetitions; vs PPE / vs Pool: times better than Python; x floor: times worse "
              "than the floor\n\n" % (reps, min(reps, REPS_CAP["payload_bench"])))
    print_table(rows, out)
    print_details(rows, out)
    if mpi:
        print_mpi(mpi, mpi_rows, out)
    missed = [r for r in rows + mpi_rows if r.met() is False]
    out.write("\ntargets (issue 5): %d met, %d missed%s\n" % (
        sum(1 for r in rows + mpi_rows if r.met()), len(missed),
        (": " + ", ".join(r.name for r in missed)) if missed else ""))
    if not args.skip_main_job:
        main_job_section(args, out)
    out.write("whole run: %.0f s\n" % m["seconds"])
    if json_path:
        with open(json_path, "w") as f:
            json.dump([r.to_json() for r in rows + mpi_rows], f, indent=1)
            f.write("\n")
        with open(os.path.splitext(json_path)[0] + ".machine.json", "w") as f:
            json.dump({**m, "python": py and py["python"],
                       "benchmark_context": b.context}, f, indent=1)
            f.write("\n")
        log("wrote %s" % json_path)


def main_job_section(args, out):
    """poolrun's main job: normalize over real pages and over the sample, vs
    the same job in Python and the parsers' floors (bench/main_job.py)."""
    sys.path.insert(0, os.path.join(runfiles_root(), "bench"))
    import main_job
    t0 = time.monotonic()
    result = main_job.run(reps=2 if args.quick else 3)
    log("main job: %.1f s" % (time.monotonic() - t0))
    main_job.report(result, out)
    base = os.environ.get("BUILD_WORKING_DIRECTORY", os.getcwd())
    if args.json:
        path = args.json if os.path.isabs(args.json) else os.path.join(base, args.json)
        with open(os.path.splitext(path)[0] + ".main_job.json", "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
