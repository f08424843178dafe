#!/usr/bin/env bash
# Checks how //pool:procpool_worker is linked (pool/BUILD, third_party/absl.bzl):
# Abseil comes from the static archives, so the worker loads none of Debian's
# libabsl_*.so files when it starts, and exports none of Abseil's functions
# (a plugin that loads the shared Abseil keeps its own copy whole). glibc
# stays shared, because the worker dlopens plugins.
#
# Under --config=tsan (argument --tsan) the worker links the shared Abseil
# instead, which //third_party:absl_tsan_shim interposes: checked as well.
set -euo pipefail

worker="$1"
mode="${2:-}"

if ! command -v readelf > /dev/null; then
  echo "readelf not found (Debian package binutils, which g++ depends on)" >&2
  exit 1
fi
if [ ! -f "$worker" ]; then
  echo "worker not found: $worker" >&2
  exit 1
fi

needed=$(readelf -d -W "$worker" | sed -n 's/.*(NEEDED).*Shared library: \[\(.*\)\]/\1/p')
echo "NEEDED of $worker:"
echo "$needed" | sed 's/^/  /'

fail=0
if ! echo "$needed" | grep -q '^libc\.so'; then
  echo "FAIL: the worker must link glibc dynamically (it dlopens plugins)" >&2
  fail=1
fi

absl_needed=$(echo "$needed" | grep '^libabsl_' || true)
if [ "$mode" = "--tsan" ]; then
  if ! echo "$absl_needed" | grep -q '^libabsl_synchronization\.so'; then
    echo "FAIL: under --config=tsan the worker must link the shared Abseil" \
         "(absl_tsan_shim interposes libabsl_synchronization.so)" >&2
    fail=1
  fi
else
  if [ -n "$absl_needed" ]; then
    echo "FAIL: the worker loads Abseil's shared libraries:" $absl_needed >&2
    fail=1
  fi
  # Defined (not UND), globally bound Abseil symbols in the dynamic symbol
  # table: a plugin's shared Abseil would bind to them. Inline functions are
  # WEAK and identical in every copy; they may appear.
  exported=$(readelf --dyn-syms -W "$worker" |
             awk '$5 == "GLOBAL" && $7 != "UND" && $8 ~ /^_ZN?K?4absl/ {print $8}')
  if [ -n "$exported" ]; then
    echo "FAIL: the worker exports Abseil symbols:" >&2
    echo "$exported" | head -20 >&2
    fail=1
  fi
fi

if [ "$fail" -ne 0 ]; then exit 1; fi
echo "PASS"
