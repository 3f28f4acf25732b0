#!/usr/bin/env bash
# Makes sure the default model exists at models/default (what every command uses without --model):
# a link to the trained models/tiny-en (docs/default-model.md).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -e models/default ]; then
  ln -s tiny-en models/default
fi
