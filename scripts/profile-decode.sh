#!/usr/bin/env bash
# Where one decode step's GPU time goes, per kernel: runs `dsinfer bench --device cuda` under Nsight
# Compute with CUDA graphs off (ncu serializes kernels, so the sum exceeds an unprofiled step), keeps the
# kernels of the last step (from its embedding launch on) and prints them summed by kernel, then in order.
# Usage: scripts/profile-decode.sh MODEL_DIR [BATCH] [DSINFER_BINARY]   (needs ncu and python3)
set -euo pipefail
model=${1:?usage: scripts/profile-decode.sh MODEL_DIR [BATCH] [DSINFER_BINARY]}
batch=${2:-1}
bin=${3:-build-cuda/dsinfer}
csv=$(mktemp)
trap 'rm -f "$csv"' EXIT
DSINFER_CUDA_GRAPHS=0 ncu --metrics gpu__time_duration.sum --csv --print-units base \
  "$bin" bench --device cuda --model "$model" --prompt 16 --context 1024 --batch "$batch" --decode 3 \
  > "$csv" 2> /dev/null
python3 - "$csv" <<'PY'
import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head = rows[0]
name, value = head.index('Kernel Name'), head.index('Metric Value')
kernels = [(r[name], float(r[value].replace(',', '')) / 1e3) for r in rows[1:]]
starts = [i for i, (n, _) in enumerate(kernels) if 'embed' in n.lower()]
step = kernels[starts[-1]:] if starts else kernels
print(f'last step: {len(step)} kernels, {sum(t for _, t in step):.1f} us (serialized)')
total = {}
for n, t in step:
    key = n.split('(')[0]
    c, s = total.get(key, (0, 0.0))
    total[key] = (c + 1, s + t)
for key, (c, s) in sorted(total.items(), key=lambda kv: -kv[1][1]):
    print(f'{s:9.1f} us {c:4d}x  {key}')
print('in order:')
for n, t in step:
    print(f'{t:9.1f} us  {n.split("(")[0]}')
PY
