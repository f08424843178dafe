#!/usr/bin/env bash
# Runs a test program under mpirun on this host, bounded in time.
#
#   mpirun_test.sh NP PROGRAM [mpirun options...] -- [program options...]
#   mpirun_test.sh mpmd [mpirun arguments...]   # app contexts given verbatim
#
# Flags every launch gets: running as root is allowed (the CI machine runs
# as root), traffic stays on loopback, more ranks than cores are allowed
# (CI has 2 cores), and idle ranks yield instead of spinning.
set -uo pipefail
if [ "$1" = mpmd ]; then
  shift
  launch=("$@")
else
  np=$1
  program=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
  shift 2
  mpi_args=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do mpi_args+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  launch=(-np "$np" "${mpi_args[@]}" "$program" "$@")
fi

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI keeps its session directory (and unix sockets, whose paths must
# be short) under TMPDIR; Bazel's TEST_TMPDIR is too deep for them.
session_dir=$(mktemp -d /tmp/procpool_mpi.XXXXXX)
trap 'rm -rf "$session_dir"' EXIT
export TMPDIR=$session_dir
# Under --config=asan: Open MPI leaks at MPI_Finalize, in libmpi and in the
# components it unloads (so LeakSanitizer cannot even name them, and a
# suppression by library cannot match). Leak checking stays on for the
# pool's own suites (//tests/pool, ...); here ASan checks everything else.
if [ -n "${ASAN_OPTIONS:-}" ]; then
  export ASAN_OPTIONS="${ASAN_OPTIONS}:detect_leaks=0"
fi
# Under --config=tsan: Open MPI's own threads and locks, which TSan cannot
# see into, are suppressed (tests/mpi/tsan_suppressions.txt); procpool's
# are not.
if [ -n "${TSAN_OPTIONS:-}" ]; then
  export TSAN_OPTIONS="${TSAN_OPTIONS}:suppressions=$(cd "$(dirname "$0")" && pwd)/tsan_suppressions.txt"
fi
# Rank 0 writes its exit code here: under --enable-recovery mpirun exits 0
# whatever the ranks returned.
export PROCPOOL_MPI_RESULT_FILE=$session_dir/rank0_exit_code

timeout --kill-after=10 240 mpirun --oversubscribe \
  --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo \
  --mca mpi_yield_when_idle 1 \
  "${launch[@]}"
rc=$?
if [ "$rc" -eq 124 ]; then echo "mpirun_test.sh: mpirun timed out" >&2; fi
if [ ! -s "$PROCPOOL_MPI_RESULT_FILE" ]; then
  echo "mpirun_test.sh: rank 0 did not report its result (mpirun exit $rc)" >&2
  exit 1
fi
rank0=$(cat "$PROCPOOL_MPI_RESULT_FILE")
if [ "$rank0" != 0 ]; then exit "$rank0"; fi
exit "$rc"
