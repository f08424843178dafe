"""The machinery of bench/compare.py: running a Google Benchmark binary,
its per-repetition samples, and the rows of the table with their
formatting. Standard library only."""
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def log(msg):
    print("compare: " + msg, file=sys.stderr, flush=True)


def runfiles_root():
    rd = os.environ.get("RUNFILES_DIR")
    if rd:
        return os.path.join(os.path.abspath(rd), "procpool")
    return os.path.dirname(HERE)


def run_binary(name, reps, extra_flags, raw_dir):
    path = os.path.join(runfiles_root(), "bench", name)
    cmd = [path, "--benchmark_format=json", "--benchmark_repetitions=%d" % reps,
           "--benchmark_enable_random_interleaving=false"] + extra_flags
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log("%s: %.1f s" % (name, time.monotonic() - t0))
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        raise SystemExit("compare: %s failed with code %d" % (name, p.returncode))
    if raw_dir:
        with open(os.path.join(raw_dir, name + ".json"), "w") as f:
            f.write(p.stdout)
    data = json.loads(p.stdout)
    for b in data["benchmarks"]:
        if b.get("error_occurred"):
            raise SystemExit("compare: %s: %s: %s" % (name, b["name"], b.get("error_message")))
    return data


TIME_SCALE = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


class Bench:
    """Per-repetition samples of the Google Benchmark results."""

    def __init__(self):
        self.runs = {}  # run_name -> list of iteration entries
        self.context = None

    def add(self, data):
        self.context = self.context or data.get("context")
        for b in data["benchmarks"]:
            if b.get("run_type") != "iteration":
                continue
            self.runs.setdefault(b["run_name"], []).append(b)

    def samples(self, run, field):
        if run not in self.runs:
            raise KeyError("no benchmark run named %s (have: %s)" % (run, sorted(self.runs)))
        out = []
        for b in self.runs[run]:
            if field == "seconds":  # real time per iteration
                out.append(b["real_time"] * TIME_SCALE[b["time_unit"]])
            elif field in b:
                out.append(float(b[field]))
            else:
                raise KeyError("%s has no field %s" % (run, field))
        return out


def med(xs):
    return statistics.median(xs) if xs else None


def spread(xs):
    """Half the range of the samples, as a fraction of their median."""
    if not xs or len(xs) < 2:
        return None
    m = statistics.median(xs)
    return (max(xs) - min(xs)) / 2 / m if m else None


class Row:
    def __init__(self, name, unit, higher_better, procpool, floor=None, ppe=None,
                 pool=None, floor_note="", notes="", target=None, extra=None):
        self.name, self.unit, self.higher_better = name, unit, higher_better
        self.procpool, self.floor = procpool or [], floor or []
        self.ppe, self.pool = ppe or [], pool or []
        self.floor_note, self.notes = floor_note, notes
        self.target = target  # (text, predicate(row) -> bool)
        self.extra = extra or {}

    def better(self, other):
        a, b = med(self.procpool), med(other)
        if a is None or b is None or a == 0 or b == 0:
            return None
        return a / b if self.higher_better else b / a

    def x_floor(self):
        a, f = med(self.procpool), med(self.floor)
        if a is None or f is None or a == 0 or f == 0:
            return None
        return f / a if self.higher_better else a / f

    def met(self):
        if self.target is None or med(self.procpool) is None:
            return None
        return bool(self.target[1](self))

    def to_json(self):
        return {
            "name": self.name,
            "unit": self.unit,
            "procpool": med(self.procpool),
            "python_ppe": med(self.ppe),
            "python_pool": med(self.pool),
            "floor": med(self.floor),
            "better": "higher" if self.higher_better else "lower",
            "samples": {"procpool": self.procpool, "python_ppe": self.ppe,
                        "python_pool": self.pool, "floor": self.floor},
            "spread": {"procpool": spread(self.procpool), "python_ppe": spread(self.ppe),
                       "python_pool": spread(self.pool), "floor": spread(self.floor)},
            "vs_python_ppe": self.better(self.ppe),
            "vs_python_pool": self.better(self.pool),
            "x_floor": self.x_floor(),
            "floor_is": self.floor_note,
            "notes": self.notes,
            "target": self.target[0] if self.target else None,
            "target_met": self.met(),
            **self.extra,
        }


def fmt_num(v):
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1e9:
        return "%.2fG" % (v / 1e9)
    if a >= 1e6:
        return "%.2fM" % (v / 1e6)
    if a >= 1e4:
        return "%.0fk" % (v / 1e3)
    if a >= 100:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    if a >= 1:
        return "%.2f" % v
    return "%.3f" % v


def fmt_cell(xs, note=None):
    if not xs:
        return "never" if note and note.startswith("never") else "-"
    s = spread(xs)
    return fmt_num(med(xs)) + ("" if s is None else " ±%d%%" % round(100 * s))


def fmt_ratio(r):
    return "-" if r is None else ("%.2fx" % r if r < 100 else "%.0fx" % r)
