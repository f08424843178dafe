#!/usr/bin/env bash
# Three ranks, each started in its own directory: rank 1 where plugin.so is
# the math plugin, rank 2 where it is the faults plugin. The front end asks
# for "plugin.so"; the agents' manifests differ and Create() must say so.
#   manifest_mismatch_test.sh MPIRUN_TEST_SH PROGRAM MATH_SO FAULTS_SO
set -euo pipefail
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
launcher=$(abs "$1"); program=$(abs "$2"); math=$(abs "$3"); faults=$(abs "$4")
dirs=$(mktemp -d "${TEST_TMPDIR:-/tmp}/mismatch.XXXXXX")
mkdir -p "$dirs/front" "$dirs/a" "$dirs/b"
ln -s "$math" "$dirs/a/plugin.so"
ln -s "$faults" "$dirs/b/plugin.so"
exec "$launcher" mpmd \
  -np 1 --wdir "$dirs/front" "$program" --gtest_filter='ManifestMismatch*' : \
  -np 1 --wdir "$dirs/a" "$program" : \
  -np 1 --wdir "$dirs/b" "$program"
