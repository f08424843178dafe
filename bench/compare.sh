#!/bin/sh
# //bench:compare: runs bench/compare.py with the machine's Python 3 (the
# standard library is all it needs), from this target's runfiles.
set -e
if [ -z "${RUNFILES_DIR:-}" ]; then
  if [ -d "$0.runfiles" ]; then
    RUNFILES_DIR="$0.runfiles"
  else
    RUNFILES_DIR="$(cd "$(dirname "$0")/.." && pwd)"
  fi
fi
RUNFILES_DIR="$(cd "$RUNFILES_DIR" && pwd)"
export RUNFILES_DIR
exec /usr/bin/python3 "$RUNFILES_DIR/procpool/bench/compare.py" "$@"
