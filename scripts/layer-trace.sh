#!/usr/bin/env bash
# A timeline of one Flash layer's decode graph under Nsight Systems (bench_cuda --layer-trace: the
# model's sequence on both streams, replayed as CUDA graphs). bench_cuda --layer-trace prints the same
# timeline itself from CUPTI's kernel records when the toolkit has CUPTI (the usual case); this script
# is for machines with nsys, whose report also holds the API calls (not yet run: the GPU machines
# lent so far have no nsys). Needs nsys and python3.
# Usage: scripts/layer-trace.sh [BENCH_CUDA_BINARY] [OUT_DIR]
set -euo pipefail
bin=${1:-build-cuda/bench_cuda}
out=${2:-layer-trace-out}
mkdir -p "$out"
nsys=$(command -v nsys || ls /usr/local/cuda/bin/nsys 2> /dev/null || ls /opt/nvidia/nsight-systems/*/bin/nsys 2> /dev/null | head -1)
[ -n "$nsys" ] || { echo "layer-trace: nsys not found" >&2; exit 1; }
"$nsys" profile --capture-range=cudaProfilerApi --cuda-graph-trace=node -o "$out/layer" -f true "$bin" --layer-trace \
  > "$out/nsys.log" 2>&1
"$nsys" stats -r cuda_gpu_trace -f csv -o "$out/layer" "$out/layer.nsys-rep" > "$out/stats.log" 2>&1
python3 "$(dirname "$0")/layer_trace.py" "$out/layer_cuda_gpu_trace.csv"
