#!/usr/bin/env bash
# Where a decode step's wall time goes between kernels: runs `dsinfer bench --device cuda` (batch 1,
# graphs as configured) under Nsight Systems, then, for the last decode steps (split at the embedding
# launch that starts each step), prints the step's span, the time some kernel or copy was running, the
# idle rest and the largest gaps with what followed each. Complements scripts/profile-decode.sh (ncu:
# each kernel's own time, serialized). Extra environment (e.g. DSINFER_CUDA_DECODE_TABLES=2) applies.
# Usage: scripts/decode-timeline.sh MODEL_DIR [DSINFER_BINARY] [STEPS_SHOWN]   (needs nsys and python3)
set -euo pipefail
model=${1:?usage: scripts/decode-timeline.sh MODEL_DIR [DSINFER_BINARY] [STEPS_SHOWN]}
bin=${2:-build-cuda/dsinfer}
shown=${3:-3}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
nsys profile -t cuda --cuda-graph-trace=node -o "$dir/trace" -f true \
  "$bin" bench --device cuda --model "$model" --prompt 16 --context 1024 --batch 1 --decode 12 > /dev/null
nsys stats --report cuda_gpu_trace --format csv -o "$dir/trace" "$dir/trace.nsys-rep" > /dev/null
python3 "$(dirname "$0")/timeline_gaps.py" "$dir"/trace_cuda_gpu_trace.csv "$shown"
