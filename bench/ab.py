#!/usr/bin/env python3
"""Two builds of procpool side by side, interleaved: each benchmark binary
of build A and of build B runs in turn, round after round (the order
alternating), so both see the same load on a shared machine. Prints the
median of every procpool benchmark's figure and B/A.

  # in each checkout: bazel build -c opt //bench:compare
  python3 bench/ab.py A/bazel-out/k8-opt/bin/bench B/bazel-out/k8-opt/bin/bench [rounds]

Standard library only. docs/PERFORMANCE.md says how it was used.
"""
import json, statistics, subprocess, sys, time

old_dir, new_dir = sys.argv[1], sys.argv[2]  # A, B
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
RUNS = [
    ("map_bench", ["--benchmark_min_time=0.01",
                   "--benchmark_filter=BM_MapAdd/chunksize:0/pairs:1000000/|BM_MapAdd/chunksize:1/pairs:100000/"]),
    ("submit_bench", ["--benchmark_min_time=0.2", "--benchmark_filter=BM_SubmitAsCompleted"]),
    ("round_trip_bench", ["--benchmark_min_time=0.3", "--benchmark_filter=BM_RoundTripNoop"]),
    ("startup_bench", ["--benchmark_min_time=0.3", "--benchmark_filter=BM_PoolStart"]),
    ("payload_bench", ["--benchmark_min_time=0.2",
                       "--benchmark_filter=BM_PayloadIdentity/bytes:(8|1024|65536|1048576|16777216)/"]),
    ("scaling_bench", ["--benchmark_min_time=0.01", "--benchmark_filter=BM_ScalingSpin/.*workers:2"]),
    ("crash_recovery_bench", ["--benchmark_filter=BM_CrashRecovery"]),
]
# figure: (counter, how to read it); higher is better unless noted
FIGS = ["items_per_second", "first_result_ms", "to_error_ms", "to_pids_ms", "to_serving_ms",
        "caller_cpu_us_per_task"]
data = {"old": {}, "new": {}}
for r in range(rounds):
    for binary, flags in RUNS:
        for side, d in (("old", old_dir), ("new", new_dir)) if r % 2 == 0 else (("new", new_dir), ("old", old_dir)):
            t0 = time.time()
            rf = f"{d}/compare.runfiles"
            p = subprocess.run([f"{rf}/procpool/bench/{binary}", "--benchmark_format=json",
                                "--benchmark_repetitions=2"] + flags,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=dict(__import__("os").environ, RUNFILES_DIR=rf))
            if p.returncode != 0:
                print(f"{side} {binary} failed: {p.returncode}", file=sys.stderr)
                continue
            for b in json.loads(p.stdout)["benchmarks"]:
                if b.get("run_type") == "aggregate":
                    continue
                # Benchmarks that gained arguments since (the start method,
                # the slow plugin) compare under their old name, at the
                # old behaviour's values; the other values have no A side.
                name = b["name"].replace("/zygote:0", "").replace("/slow_plugin:0", "")
                if "zygote:1" in name or "slow_plugin:1" in name:
                    continue
                for f in FIGS + ["real_time"]:
                    if f in b:
                        data[side].setdefault((name, f), []).append(b[f])
            print(f"round {r} {side} {binary}: {time.time()-t0:.1f}s", file=sys.stderr, flush=True)
print(f"{'benchmark':62} {'figure':24} {'A':>10} {'B':>10} {'B/A':>8}")
for key in sorted(data["new"]):
    if key not in data["old"]:
        continue
    name, f = key
    if f == "real_time" and any((name, g) in data["new"] for g in FIGS):
        continue
    o, n = statistics.median(data["old"][key]), statistics.median(data["new"][key])
    print(f"{name:62} {f:24} {o:10.4g} {n:10.4g} {n / o if o else float('nan'):8.3f}")
