#!/usr/bin/env bash
# The README's first command: install what is missing, build, and run the main job on the
# project's default model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
scripts/default-model.sh
./build/dsinfer generate --prompt "The capital of France is" --max-tokens 24
