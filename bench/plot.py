#!/usr/bin/python3
"""Plots of a //bench:compare --json output, for docs/PERFORMANCE.md.

    /usr/bin/python3 bench/plot.py RESULTS.json OUT_DIR

Needs matplotlib (Debian: apt-get install python3-matplotlib). Writes:
  headline.png   procpool vs the Python pools vs the floor, one panel per row
  task_size.png  throughput of CPU-bound tasks vs task size, 2 workers
  payload.png    identity bandwidth vs payload size, with the floors
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"procpool": "#1f77b4", "python_ppe": "#ff7f0e", "python_pool": "#2ca02c",
          "floor": "#7f7f7f"}
LABELS = {"procpool": "procpool", "python_ppe": "Python ProcessPoolExecutor",
          "python_pool": "Python multiprocessing.Pool", "floor": "kernel floor"}

HEADLINE = [
    ("map_small_tasks_per_s", "map of add, tasks/s\n(Python: best chunksize)"),
    ("submit_as_completed_per_s", "submit + as_completed,\ntasks/s"),
    ("round_trip_us", "serial round trip, us\n(lower is better)"),
    ("startup_2_workers_ms", "2 workers + first result, ms\n(lower is better)"),
    ("payload_1mib_gbps", "identity 1 MiB,\nGB/s each way"),
    ("payload_16mib_gbps", "identity 16 MiB,\nGB/s each way"),
    ("scaling_10us_2v1", "10 us tasks,\nspeedup 2 vs 1 worker"),
    ("crash_to_error_ms", "worker killed -> failed future, ms\n(lower is better)"),
]


def nan(v):
    return float("nan") if v is None else v


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    rows = {r["name"]: r for r in json.load(open(sys.argv[1]))}
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    kinds = ["procpool", "python_ppe", "python_pool", "floor"]

    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    for ax, (name, title) in zip(axes.flat, HEADLINE):
        r = rows[name]
        vals = [r.get(k) for k in kinds]
        xs = range(len(kinds))
        ax.bar(xs, [v or 0 for v in vals], color=[COLORS[k] for k in kinds])
        for x, v in zip(xs, vals):
            ax.text(x, (v or 0), ("never" if name.startswith("crash") else "n/a")
                    if v is None else "%.3g" % v, ha="center",
                    va="bottom", fontsize=8)
        if all(v for v in vals) and max(vals) / min(vals) > 30:
            ax.set_yscale("log")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(["procpool", "PPE", "Pool", "floor"], fontsize=8)
        ax.set_title(title, fontsize=9)
    fig.suptitle("procpool vs Python's pools vs the kernel floor (2 cores, medians)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "headline.png"), dpi=80)
    plt.close(fig)

    micros = [1, 10, 100, 1000, 10000]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k in kinds:
        ys = [nan(rows["spin_%dus_2w_tasks_per_s" % us].get(k)) for us in micros]
        ax.plot(micros, ys, "o-", color=COLORS[k], label=LABELS[k] + " (2 workers)")
    ax.plot(micros, [nan(rows["spin_%dus_2w_tasks_per_s" % us].get("procpool_1w"))
                     for us in micros],
            "o--", color=COLORS["procpool"], alpha=0.5, label="procpool (1 worker)")
    ax.plot(micros, [2e6 / us for us in micros], ":", color="black", alpha=0.4,
            label="2 cores, zero overhead")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("task duration, us of computation")
    ax.set_ylabel("tasks per second")
    ax.set_title("CPU-bound tasks: throughput vs task size")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "task_size.png"), dpi=80)
    plt.close(fig)

    sizes = [("8b", 8), ("1kib", 1 << 10), ("64kib", 64 << 10), ("1mib", 1 << 20),
             ("16mib", 16 << 20), ("64mib", 64 << 20)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [s for _, s in sizes]
    series = [("procpool", "procpool", COLORS["procpool"], "o-"),
              ("python_ppe", LABELS["python_ppe"], COLORS["python_ppe"], "o-"),
              ("python_pool", LABELS["python_pool"], COLORS["python_pool"], "o-"),
              ("floor", "floor: socketpair echo", COLORS["floor"], "s--"),
              ("floor_shared_region", "floor: shared region, reused", "#9467bd", "s--"),
              ("floor_fresh_memfd", "floor: fresh memfd per message", "#8c564b", "s--"),
              ("floor_memcpy", "memcpy x2", "black", ":")]
    for key, label, color, style in series:
        ys = [nan(rows["payload_%s_gbps" % l].get(key)) for l, _ in sizes]
        ax.plot(xs, ys, style, color=color, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("payload bytes")
    ax.set_ylabel("GB/s each way")
    ax.set_title("identity(string): bandwidth vs payload size")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "payload.png"), dpi=80)
    plt.close(fig)
    print("wrote %s/{headline,task_size,payload}.png" % out)


if __name__ == "__main__":
    main()
