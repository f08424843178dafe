#!/usr/bin/env bash
# Fuzzes the frame and message decoders with libFuzzer (clang 14, ASan and
# UBSan) for a bounded time, starting from tests/fuzz/corpus.
#
#   scripts/fuzz.sh [seconds]      default 60
#
# New inputs go to a scratch corpus under $TMPDIR; crashes are written to the
# current directory as crash-* and make the script fail.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
out=${TMPDIR:-/tmp}/procpool-fuzz
mkdir -p "$out/corpus"
cp -n tests/fuzz/corpus/* "$out/corpus/" 2>/dev/null || true
rm -f "$out/corpus/README"

absl_libs=$(pkg-config --libs absl_status absl_statusor absl_strings absl_str_format)
clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=undefined -I. \
  tests/fuzz/wire_fuzzer.cc pool/internal/wire.cc pool/internal/status_macros.cc \
  $absl_libs -o "$out/wire_fuzzer"
"$out/wire_fuzzer" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
  -print_final_stats=1 "$out/corpus"
