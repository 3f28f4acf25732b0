#!/usr/bin/env bash
# Runs the CPU test suite (what CI runs): builds, then every ctest label but cuda.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
cd build
ctest --output-on-failure -j "$(nproc)" -LE cuda "$@"
