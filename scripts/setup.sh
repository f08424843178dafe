#!/usr/bin/env bash
# Installs what procpool needs to build and test on Debian 12, offline from
# anything but Debian's archive. Idempotent: prints nothing and changes nothing
# when everything is already installed.
set -euo pipefail

packages=(
  bazel-bootstrap   # Bazel 4.2.3 (WORKSPACE-based)
  g++
  libabsl-dev       # Abseil 20220623
  libcereal-dev     # cereal 1.3.2 (header-only)
  libgtest-dev      # GoogleTest 1.12.1 (static)
  libgmock-dev
  libbenchmark-dev  # Google Benchmark 1.7.1
  python3           # bench/compare runs Python's pools side by side
  pkg-config        # scripts/fuzz.sh finds Abseil's link flags
  clang             # scripts/fuzz.sh: libFuzzer with ASan and UBSan
  libclang-rt-14-dev
  libseccomp-dev    # the sandboxed worker's system call filter (2.5.4)
  openmpi-bin       # Open MPI 4.1.4: mpirun, for the MPI backend (//pool:mpi)
  libopenmpi-dev    # its headers and libmpi
  nlohmann-json3-dev  # poolrun: JSON Lines in and out (3.11.2, header-only)
  libsimdjson-dev     # poolrun: the fast JSON parser of records (3.0.1)
  libcsv-dev          # poolrun: RFC 4180 CSV reader and field quoting (3.0.3)
  libutf8proc-dev     # plugins/text: UTF-8 validation, NFKC, case folding (2.8.0)
  libicu-dev          # plugins/text: word segmentation for token counts (72)
  libxml2-dev         # plugins/text: HTML parser (tags, entities) (2.9.14)
  libre2-dev          # plugins/text: e-mail and URL patterns
  libphonenumber-dev  # plugins/text: finding phone numbers in text (8.12)
  libgumbo-dev        # bench: the HTML5 parser normalize's libxml2 is measured against
  python3.11-doc      # tests/plugins/text: real HTML pages for the fidelity test
  doxygen           # scripts/docs.sh: the API reference (1.9.4)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: missing packages: ${missing[*]}; run as root (or install them)" >&2
    exit 1
  fi
  echo "setup.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
