#!/usr/bin/env python3
"""normalize on real pages that nobody on the project wrote.

Builds a JSON Lines corpus from a few hundred pages of Debian's Python
documentation (python3.11-doc, installed by scripts/setup.sh), as whole
documents and as fragments cut out of them at tag boundaries, adds the
records of the sample data set (data/web_sample_small.jsonl), runs poolrun's
main job over it (text plugin, `normalize`, 2 workers), and compares each
output with plugins/text/visible_text.py, a small reference extractor that
implements the text rule of docs/POOLRUN.md on Python's html.parser.

Per record, word recall is the share of the reference's words (as a
multiset) that normalize also gives; a word glued to its neighbour or split
in two counts as lost. Targets, for each of the three kinds: no record
with visible text comes out empty, median recall >= 0.99, 5th percentile
>= 0.97. Precision (normalize's words the reference also has) is held to
the same median, so hidden text (scripts, styles, head) cannot leak in.
"""

import collections
import glob
import json
import os
import re
import statistics
import subprocess
import sys

PAGES = 300
DOC_GLOBS = ["/usr/share/doc/python3.11/html", "/usr/share/doc/python3*/html"]


def runfile(path):
    root = os.environ["TEST_SRCDIR"]
    return os.path.join(root, os.environ.get("TEST_WORKSPACE", "procpool"), path)


sys.path.insert(0, os.path.dirname(runfile("plugins/text/visible_text.py")))
import visible_text  # noqa: E402


def find_docs():
    for pattern in DOC_GLOBS:
        for d in sorted(glob.glob(pattern)):
            pages = sorted(glob.glob(os.path.join(d, "**", "*.html"), recursive=True))
            if len(pages) >= PAGES:
                return d, pages
    sys.exit("FAIL: no Python HTML documentation under /usr/share/doc/python3*/html; "
             "run scripts/setup.sh (it installs python3.11-doc)")


def pick(pages, n):
    step = len(pages) / n
    return [pages[int(i * step)] for i in range(n)]


def fragment(page):
    """The part of a page from a tag in its first third to a tag in its last
    third: unclosed elements at both ends, no <head>."""
    starts = [m.start() for m in re.finditer(r"<(?:p|div|h[1-6]|script)\b", page)]
    if len(starts) < 6:
        return None
    a = starts[len(starts) // 3]
    b = starts[2 * len(starts) // 3]
    return page[a:b] if b > a else None


def words(text):
    return collections.Counter(text.split())


def share(part, whole):
    total = sum(whole.values())
    if total == 0:
        return 1.0
    return sum((part & whole).values()) / total


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    tmp = os.environ["TEST_TMPDIR"]
    docs, pages = find_docs()
    corpus = os.path.join(tmp, "pages.jsonl")
    records = []
    with open(corpus, "w", encoding="utf-8") as f:
        for path in pick(pages, PAGES):
            with open(path, encoding="utf-8", errors="replace") as p:
                page = p.read()
            rel = os.path.relpath(path, docs)
            for kind, text in (("document", page), ("fragment", fragment(page))):
                if text is None:
                    continue
                records.append((rel, kind, text))
                f.write(json.dumps({"id": len(records) - 1, "page": rel, "kind": kind,
                                    "text": text}) + "\n")
        # The sample data set's records too: made up, but with the markup
        # patterns of scraped snippets (leading scripts, stray table cells).
        with open(runfile("data/web_sample_small.jsonl"), encoding="utf-8",
                  errors="surrogateescape") as sample:
            for n, line in enumerate(sample, 1):
                try:
                    text = json.loads(line)["text"]
                except (ValueError, KeyError, TypeError):
                    continue
                if not isinstance(text, str) or not text:
                    continue
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    continue
                records.append((f"web_sample_small.jsonl:{n}", "sample record", text))
                f.write(json.dumps({"id": len(records) - 1, "text": text}) + "\n")
    out = os.path.join(tmp, "clean.jsonl")
    run = subprocess.run(
        [runfile("cli/poolrun"), "--plugin", runfile("plugins/text/libtext.so"), "--task",
         "normalize", "--input", corpus, "--field", "text", "--output", out, "--workers", "2",
         "--no-progress"],
        capture_output=True, text=True, timeout=600)
    sys.stderr.write(run.stderr)
    if run.returncode != 0:
        sys.exit(f"FAIL: poolrun exited with {run.returncode}")
    results = {}
    with open(out, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            results[r["id"]] = r["normalize"]
    if len(results) != len(records):
        sys.exit(f"FAIL: {len(records)} records in, {len(results)} out")

    failures = []
    for kind in ("document", "fragment", "sample record"):
        recalls, precisions, empty, worst = [], [], [], []
        for i, (rel, k, text) in enumerate(records):
            if k != kind:
                continue
            ref = words(visible_text.normalize(text))
            got = words(results[i])
            if sum(ref.values()) > 0 and not got:
                empty.append(rel)
            recall, precision = share(got, ref), share(ref, got)
            recalls.append(recall)
            precisions.append(precision)
            worst.append((recall, precision, rel))
        med, p5 = statistics.median(recalls), percentile(recalls, 0.05)
        pmed = statistics.median(precisions)
        source = "data/web_sample_small.jsonl" if kind == "sample record" else docs
        print(f"{kind}s: {len(recalls)} from {source}; word recall median {med:.4f}, "
              f"5th percentile {p5:.4f}, min {min(recalls):.4f}; precision median {pmed:.4f}, "
              f"5th percentile {percentile(precisions, 0.05):.4f}; empty outputs: {len(empty)}")
        for recall, precision, rel in sorted(worst)[:3]:
            print(f"  lowest: {rel} recall {recall:.4f} precision {precision:.4f}")
        if empty:
            failures.append(f"{kind}s with visible text came out empty: {empty[:5]}")
        if med < 0.99:
            failures.append(f"{kind}s: median recall {med:.4f} < 0.99")
        if p5 < 0.97:
            failures.append(f"{kind}s: 5th percentile recall {p5:.4f} < 0.97")
        if pmed < 0.99:
            failures.append(f"{kind}s: median precision {pmed:.4f} < 0.99")
    if failures:
        sys.exit("FAIL: " + "; ".join(failures))
    print("PASS")


if __name__ == "__main__":
    main()
