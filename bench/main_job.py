#!/usr/bin/python3
"""poolrun's main job (the text plugin's normalize over JSON Lines), measured.

    main_job.py [--reps N] [--docs DIR] [--json PATH]

Part of //bench:compare (its "main job" section), and runnable alone from
the runfiles. Two corpora:

  real pages   every page of Debian's Python documentation (python3.11-doc),
               one JSON Lines record {"id", "page", "text"} each
  sample       data/web_sample.jsonl, the quick start's 100,000 records

Rows, each the median of --reps runs, one after the other:

  - poolrun normalize, 1 and 2 workers: records/s, MB/s of input, and the CPU
    per record of poolrun and of its workers (from its summary line); its
    workers sandboxed (the default), and 2 workers again with --no-sandbox;
  - the same job in Python: multiprocessing.Pool(2).imap(chunksize=64) over
    the lines, each parsed with json, normalized with plugins/text/
    visible_text.py (html.parser + unicodedata, the text rule), and written
    back as a JSON line;
  - the parse-only floors of the parsers on the same texts, 2 processes:
    libxml2 building a tree, libxml2 streaming to empty SAX handlers (what
    normalize uses), gumbo (an HTML5 parser) building its tree;
  - fidelity on the real pages: word recall of normalize (libxml2) and of
    the same rule over gumbo's tree, against visible_text.py.

Standard library only.
"""

import argparse
import collections
import glob
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def log(msg):
    print("main_job: " + msg, file=sys.stderr, flush=True)


def runfiles_root():
    rd = os.environ.get("RUNFILES_DIR")
    if rd:
        return os.path.join(os.path.abspath(rd), "procpool")
    return os.path.dirname(HERE)


def rf(path):
    return os.path.join(runfiles_root(), path)


sys.path.insert(0, os.path.dirname(rf("plugins/text/visible_text.py")))
import visible_text  # noqa: E402


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def build_docs_corpus(docs, path):
    pages = sorted(glob.glob(os.path.join(docs, "**", "*.html"), recursive=True))
    with open(path, "w", encoding="utf-8") as f:
        for i, p in enumerate(pages):
            with open(p, encoding="utf-8", errors="replace") as page:
                f.write(json.dumps({"id": i, "page": os.path.relpath(p, docs),
                                    "text": page.read()}) + "\n")
    return len(pages)


SUMMARY = re.compile(r"poolrun: ([\d,]+) records in ([\d.]+) s .*CPU per record: poolrun "
                     r"([\d.]+) us, workers ([\d.]+) us")


def run_poolrun(corpus, workers, out, sandbox=True):
    cmd = [rf("cli/poolrun"), "--plugin", rf("plugins/text/libtext.so"), "--task", "normalize",
           "--input", corpus, "--field", "text", "--output", out, "--workers", str(workers),
           "--no-progress"] + ([] if sandbox else ["--no-sandbox"])
    t0 = time.monotonic()
    p = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - t0
    if p.returncode not in (0, 1):
        raise SystemExit("main_job: poolrun failed (%d): %s" % (p.returncode, p.stderr))
    m = SUMMARY.search(p.stderr)
    if not m:
        raise SystemExit("main_job: no summary in poolrun's stderr: " + p.stderr)
    return {"wall": wall, "records": int(m.group(1).replace(",", "")),
            "parent_us": float(m.group(3)), "worker_us": float(m.group(4))}


def _py_job_line(line):
    try:
        record = json.loads(line)
        text = record["text"]
        if not isinstance(text, str):
            raise TypeError("text is not a string")
    except (ValueError, KeyError, TypeError) as e:
        return None, str(e)
    record["normalize"] = visible_text.normalize(text)
    return json.dumps(record, ensure_ascii=False) + "\n", None


def run_python(corpus, out):
    t0 = time.monotonic()
    failed = 0
    with open(corpus, encoding="utf-8", errors="surrogateescape") as f, \
            open(out, "w", encoding="utf-8", errors="surrogateescape") as o, \
            multiprocessing.Pool(2) as pool:
        for line, err in pool.imap(_py_job_line, f, chunksize=64):
            if line is None:
                failed += 1
            else:
                o.write(line)
    return {"wall": time.monotonic() - t0, "failed": failed}


def run_floor(mode, corpus):
    p = subprocess.run([rf("bench/html_parse_bench"), "--mode", mode, "--input", corpus,
                        "--procs", "2"], stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise SystemExit("main_job: html_parse_bench --mode %s failed" % mode)
    return json.loads(p.stdout)


def recall_stats(corpus, texts):
    """Word recall of `texts` (id -> normalized text) against the reference."""
    recalls, empty = [], 0
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            ref = collections.Counter(visible_text.normalize(r["text"]).split())
            got = collections.Counter(texts[r["id"]].split())
            total = sum(ref.values())
            if total and not got:
                empty += 1
            recalls.append(sum((got & ref).values()) / total if total else 1.0)
    recalls.sort()
    return {"median": statistics.median(recalls), "p5": recalls[int(0.05 * len(recalls))],
            "min": recalls[0], "empty": empty, "pages": len(recalls)}


def fidelity(corpus, poolrun_out, tmp):
    ours = {}
    with open(poolrun_out, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            ours[r["id"]] = r["normalize"]
    gumbo_out = os.path.join(tmp, "gumbo_text.jsonl")
    subprocess.run([rf("bench/html_parse_bench"), "--mode", "gumbo", "--input", corpus,
                    "--text", gumbo_out], check=True)
    gumbo = {}
    with open(gumbo_out, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            # The same normalization as normalize's, on gumbo's visible text.
            gumbo[r["id"]] = visible_text.normalize_text(r["text"])
    return {"libxml2": recall_stats(corpus, ours), "gumbo": recall_stats(corpus, gumbo)}


def med(xs):
    return statistics.median(xs)


def measure(corpus, reps, tmp, with_python, with_floors):
    size = os.path.getsize(corpus)
    rows = {}
    out = os.path.join(tmp, "out.jsonl")
    # poolrun sandboxes its workers by default; "2w_nosandbox" is the same
    # 2-worker run with --no-sandbox, for what the sandbox costs.
    for workers, sandbox, key in ((1, True, "1w"), (2, True, "2w"), (2, False, "2w_nosandbox")):
        runs = []
        for _ in range(reps):
            log("poolrun --workers %d%s on %s (load %s)" % (
                workers, "" if sandbox else " --no-sandbox", os.path.basename(corpus), loadavg()))
            runs.append(run_poolrun(corpus, workers, out, sandbox))
        n = runs[0]["records"]
        rows["poolrun_%s" % key] = {
            "records_per_s": med([n / r["wall"] for r in runs]),
            "mb_per_s": med([size / 1e6 / r["wall"] for r in runs]),
            "parent_cpu_us_per_record": med([r["parent_us"] for r in runs]),
            "worker_cpu_us_per_record": med([r["worker_us"] for r in runs]),
            "records": n, "runs": len(runs)}
    if with_python:
        runs = []
        for _ in range(reps):
            log("python multiprocessing on %s (load %s)" % (os.path.basename(corpus), loadavg()))
            runs.append(run_python(corpus, os.path.join(tmp, "py_out.jsonl")))
        n = rows["poolrun_2w"]["records"]
        rows["python_mp_2"] = {"records_per_s": med([n / r["wall"] for r in runs]),
                               "mb_per_s": med([size / 1e6 / r["wall"] for r in runs]),
                               "runs": len(runs)}
    if with_floors:
        for mode in ("libxml2-tree", "libxml2-sax", "gumbo"):
            runs = [run_floor(mode, corpus) for _ in range(reps)]
            rows["floor_" + mode] = {
                "mb_per_s": med([r["bytes"] / 1e6 / r["seconds"] for r in runs]),
                "records_per_s": med([r["records"] / r["seconds"] for r in runs]),
                "runs": len(runs)}
    return rows, out


def run(reps=3, docs=None, sample=True):
    """Measures both corpora; returns a dict of results."""
    if docs is None:
        # The Python documentation: the html directory with the most pages.
        candidates = sorted(glob.glob("/usr/share/doc/python3*/html"),
                            key=lambda d: (-len(glob.glob(os.path.join(d, "**", "*.html"),
                                                          recursive=True)), len(d), d))
        docs = candidates[0] if candidates else None
    result = {"load_start": loadavg()}
    with tempfile.TemporaryDirectory(prefix="main_job.") as tmp:
        if docs:
            corpus = os.path.join(tmp, "pages.jsonl")
            n = build_docs_corpus(docs, corpus)
            log("real pages: %d from %s, %.1f MB" % (n, docs, os.path.getsize(corpus) / 1e6))
            rows, out = measure(corpus, reps, tmp, with_python=True, with_floors=True)
            result["pages"] = {"source": docs, "records": n,
                               "bytes": os.path.getsize(corpus), "rows": rows,
                               "fidelity": fidelity(corpus, out, tmp)}
        else:
            log("no /usr/share/doc/python3*/html: install python3.11-doc (scripts/setup.sh)")
        if sample:
            corpus = rf("data/web_sample.jsonl")
            rows, _ = measure(corpus, reps, tmp, with_python=False, with_floors=False)
            result["sample"] = {"records": rows["poolrun_1w"]["records"],
                                "bytes": os.path.getsize(corpus), "rows": rows}
    result["load_end"] = loadavg()
    return result


def report(result, out):
    out.write("\npoolrun's main job: normalize (text plugin) over JSON Lines, medians "
              "(load %s -> %s)\n" % (result["load_start"], result["load_end"]))
    if "pages" in result:
        p = result["pages"]
        rows = p["rows"]
        out.write("real pages: %d pages of %s, %.1f MB\n" % (p["records"], p["source"],
                                                             p["bytes"] / 1e6))
        out.write("  %-44s %12s %9s\n" % ("", "records/s", "MB/s"))
        for key, label in (("poolrun_1w", "poolrun, 1 worker"),
                           ("poolrun_2w", "poolrun, 2 workers"),
                           ("poolrun_2w_nosandbox", "poolrun, 2 workers, --no-sandbox"),
                           ("python_mp_2", "Python multiprocessing.Pool(2), chunksize 64"),
                           ("floor_libxml2-sax", "floor: libxml2 SAX parse only, 2 procs"),
                           ("floor_libxml2-tree", "floor: libxml2 tree parse only, 2 procs"),
                           ("floor_gumbo", "floor: gumbo tree parse only, 2 procs")):
            if key in rows:
                out.write("  %-44s %12.0f %9.1f\n" % (label, rows[key]["records_per_s"],
                                                      rows[key]["mb_per_s"]))
        if "python_mp_2" in rows:
            x = rows["poolrun_2w"]["mb_per_s"] / rows["python_mp_2"]["mb_per_s"]
            out.write("  poolrun (2 workers) vs Python: %.2fx (target >= 4x: %s)\n"
                      % (x, "met" if x >= 4 else "missed"))
        for name, f in p["fidelity"].items():
            out.write("  fidelity, %s: word recall median %.4f, 5th percentile %.4f, min %.4f, "
                      "empty %d of %d\n" % (name, f["median"], f["p5"], f["min"], f["empty"],
                                            f["pages"]))
    if "sample" in result:
        s = result["sample"]
        rows = s["rows"]
        out.write("sample: data/web_sample.jsonl, %d records, %.1f MB\n" % (s["records"],
                                                                        s["bytes"] / 1e6))
        for w in (1, 2):
            r = rows["poolrun_%dw" % w]
            out.write("  poolrun, %d worker%s: %8.0f records/s %6.1f MB/s; CPU per record: "
                      "poolrun %.1f us, workers %.1f us\n"
                      % (w, "s" if w > 1 else " ", r["records_per_s"], r["mb_per_s"],
                         r["parent_cpu_us_per_record"], r["worker_cpu_us_per_record"]))
        r = rows["poolrun_2w_nosandbox"]
        out.write("  poolrun, 2 workers, --no-sandbox: %8.0f records/s %6.1f MB/s; CPU per "
                  "record: poolrun %.1f us, workers %.1f us\n"
                  % (r["records_per_s"], r["mb_per_s"], r["parent_cpu_us_per_record"],
                     r["worker_cpu_us_per_record"]))
        x = rows["poolrun_2w"]["records_per_s"] / r["records_per_s"]
        out.write("  sandboxed vs --no-sandbox (2 workers): %.1f%% (target >= 95%%: %s)\n"
                  % (100 * x, "met" if x >= 0.95 else "missed"))
        x = rows["poolrun_2w"]["records_per_s"] / rows["poolrun_1w"]["records_per_s"]
        ratio = rows["poolrun_2w"]["parent_cpu_us_per_record"] / \
            rows["poolrun_2w"]["worker_cpu_us_per_record"]
        out.write("  2 workers vs 1: %.2fx (target >= 1.8x: %s); poolrun's CPU per record is "
                  "%.2f of the workers' (target <= 0.25: %s)\n"
                  % (x, "met" if x >= 1.8 else "missed", ratio, "met" if ratio <= 0.25 else
                     "missed"))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--docs", help="a directory of HTML pages (default: Python's docs)")
    ap.add_argument("--no-sample", action="store_true")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args()
    result = run(args.reps, args.docs, not args.no_sample)
    report(result, sys.stdout)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
