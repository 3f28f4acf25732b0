#!/usr/bin/env bash
# Makes sure the default model exists at models/default (what every command uses without --model).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f models/default/config.json ]; then
  ./build/dsinfer make-synthetic --like tiny --out models/default --seed 1
fi
