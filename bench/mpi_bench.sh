#!/usr/bin/env bash
# Runs //bench:mpi_bench under mpirun on this host: 3 ranks (a front end and
# two agents of one worker each), traffic on loopback, idle ranks yielding.
#   bench/mpi_bench.sh [mpirun options...] [-- benchmark options...]
# e.g. bench/mpi_bench.sh --mca btl tcp,self -- --benchmark_format=json
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${MPI_BENCH:-}
for candidate in "$here/mpi_bench" "$here/../bazel-bin/bench/mpi_bench"; do
  if [ -z "$bin" ] && [ -x "$candidate" ]; then bin=$candidate; fi
done
if [ -z "$bin" ]; then
  echo "mpi_bench.sh: build it first: bazel build -c opt //bench:mpi_bench" >&2
  exit 1
fi
mpi_args=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do mpi_args+=("$1"); shift; done
[ $# -gt 0 ] && shift
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec mpirun -np "${MPI_BENCH_RANKS:-3}" --oversubscribe \
  --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo \
  --mca mpi_yield_when_idle 1 "${mpi_args[@]}" "$bin" "$@"
