#!/usr/bin/env bash
# Configures and builds dsinfer into build/ (Release). Extra arguments go to cmake, e.g.
# scripts/build.sh -DDSINFER_CUDA=ON
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j "$jobs"
