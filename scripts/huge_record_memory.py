#!/usr/bin/env python3
"""Peak memory of poolrun and of its worker on one huge JSON Lines record.

Writes one record of about --mb MB (the record of docs/POOLRUN.md, "One huge
record": {"id": 1, "text": "<p>Some words of a <b>page</b> &amp; more text
here.</p>\\n" * N}), runs `poolrun --workers 1` over it with the text
plugin's `normalize`, and samples the peak resident memory (VmHWM) of
poolrun and of every process under it every 20 ms until it exits; the
worker's peak is the largest of its processes' (the zygote that forks it
included). Prints both peaks in MiB and as multiples of the record's size,
and with --max-poolrun / --max-worker exits 1 when a side is over its bound.

Run from the repository root after `bazel build -c opt //cli:poolrun
//plugins/text:libtext.so`:

  python3 scripts/huge_record_memory.py --mb 300

Every wait is bounded (--timeout, default 600 s).
"""

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time

UNIT = '<p>Some words of a <b>page</b> &amp; more text here.</p>\\n'


def write_record(path, mb):
    """Writes the record (one line) to `path`; returns its size in bytes."""
    n = (mb << 20) // len(UNIT)
    with open(path, 'w') as f:
        f.write('{"id": 1, "text": "')
        chunk = UNIT * 4096
        for _ in range(n // 4096):
            f.write(chunk)
        f.write(UNIT * (n % 4096))
        f.write('"}\n')
    return os.path.getsize(path)


def children(pid):
    """Every process under `pid` (any depth)."""
    by_parent = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(')') + 2:].split()[1])
        by_parent.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in by_parent.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def hwm_kib(pid):
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def sanitizer(path):
    """The sanitizer `path` was built with ("AddressSanitizer", ...), or None."""
    with open(path, 'rb') as f:
        data = f.read()
    for symbol, name in ((b'__asan_init', 'AddressSanitizer'), (b'__tsan_init', 'ThreadSanitizer'),
                         (b'__msan_init', 'MemorySanitizer')):
        if symbol in data:
            return name
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--mb', type=int, default=300, help='record size in MiB')
    ap.add_argument('--poolrun', default='bazel-bin/cli/poolrun')
    ap.add_argument('--plugin', default='bazel-bin/plugins/text/libtext.so')
    ap.add_argument('--task', default='normalize')
    ap.add_argument('--dir', default=None, help='where to write the record and output')
    ap.add_argument('--timeout', type=float, default=600.0)
    ap.add_argument('--max-poolrun', type=float, default=None,
                    help='fail if poolrun peaks above this multiple of the record')
    ap.add_argument('--max-worker', type=float, default=None,
                    help='fail if the worker peaks above this multiple of the record')
    args = ap.parse_args()

    if args.max_poolrun is not None or args.max_worker is not None:
        built_with = sanitizer(args.poolrun)
        if built_with is not None:
            # Its allocator keeps freed memory in quarantine and adds shadow
            # memory: peaks say nothing about the copies poolrun makes.
            print(f'skipped: {args.poolrun} is built with {built_with}, whose allocator '
                  'makes peak memory meaningless')
            return 0
    tmp = tempfile.TemporaryDirectory(dir=args.dir)
    record = os.path.join(tmp.name, 'huge.jsonl')
    output = os.path.join(tmp.name, 'out.jsonl')
    size = write_record(record, args.mb)
    cmd = [args.poolrun, '--plugin', os.path.abspath(args.plugin), '--task', args.task,
           '--input', record, '--field', 'text', '--output', output, '--workers', '1',
           '--no-progress']
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    own, others = 0, {}
    timed_out = False
    while proc.poll() is None:
        own = max(own, hwm_kib(proc.pid))
        for c in children(proc.pid):
            others[c] = max(others.get(c, 0), hwm_kib(c))
        if time.monotonic() - start > args.timeout:
            timed_out = True
            proc.kill()
            break
        time.sleep(0.02)
    _, stderr = proc.communicate(timeout=60)
    wall = time.monotonic() - start
    if timed_out:
        print(f'poolrun ran past --timeout ({args.timeout} s)', file=sys.stderr)
        return 2
    mib = 1 << 20
    worker = max(others.values(), default=0)
    out_size = os.path.getsize(output) if os.path.exists(output) else 0
    digest = hashlib.sha256()
    if out_size:
        with open(output, 'rb') as f:
            for block in iter(lambda: f.read(1 << 24), b''):
                digest.update(block)
    print(f'record {size / mib:.0f} MiB, output {out_size / mib:.0f} MiB '
          f'(sha256 {digest.hexdigest()[:16]}), exit {proc.returncode}, {wall:.1f} s wall')
    print(f'poolrun peak {own * 1024 / mib:.0f} MiB = {own * 1024 / size:.2f}x the record')
    print(f'worker  peak {worker * 1024 / mib:.0f} MiB = {worker * 1024 / size:.2f}x the record')
    print(stderr.strip().splitlines()[-1] if stderr.strip() else '(no summary)')
    ok = proc.returncode == 0
    if args.max_poolrun is not None and own * 1024 > args.max_poolrun * size:
        print(f'poolrun is over {args.max_poolrun}x', file=sys.stderr)
        ok = False
    if args.max_worker is not None and worker * 1024 > args.max_worker * size:
        print(f'the worker is over {args.max_worker}x', file=sys.stderr)
        ok = False
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
