#!/usr/bin/env bash
# Builds the API reference from the public headers with Doxygen (Debian's
# doxygen 1.9.4, installed by scripts/setup.sh) into docs/api/html; open
# docs/api/html/index.html. Fails, listing them, on any Doxygen warning.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v doxygen > /dev/null; then
  echo "docs.sh: doxygen is not installed; run scripts/setup.sh (or apt-get install doxygen)" >&2
  exit 1
fi
rm -rf docs/api
doxygen docs/Doxyfile
echo "docs.sh: API reference in $(pwd)/docs/api/html/index.html"
