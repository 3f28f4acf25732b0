#!/usr/bin/env bash
# On a machine with an NVIDIA Hopper GPU: build the CUDA configuration, run the GPU tests, then the
# benchmarks docs/benchmarks.md records (one Flash layer's decode kernels, 2 synthetic Flash layers end
# to end at batch 1 and 8 under each decode setting still to be decided, the per-kernel profile of a
# decode step and its timeline of busy and idle time). Logs go to OUT (default cuda-check-out/); a summary is printed. Extra environment (e.g.
# DSINFER_CUDA_FUSED=0) applies to all. PEER: another build's dsinfer (e.g. the previous commit's),
# run in the same rounds as the reference.
# Usage: scripts/cuda-check.sh [OUT] [PEER]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-cuda-check-out}
mkdir -p "$out"
nvcc=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
[ -n "$nvcc" ] || { echo "cuda-check: nvcc not found" >&2; exit 1; }
jobs=$(nproc)
if [ ! -f build-cuda/CMakeCache.txt ]; then
  cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DDSINFER_CUDA=ON -DDSINFER_TESTS=ON \
    -DCMAKE_CUDA_COMPILER="$nvcc" > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
fi
cmake --build build-cuda -j"$jobs" > "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
status=0
(cd build-cuda && ctest -L cuda --output-on-failure) > "$out/ctest.log" 2>&1 || status=1
grep -E "tests passed|FAILED" "$out/ctest.log"
build-cuda/bench_cuda --layer > "$out/layer.log" 2>&1 || status=1
grep -E "^ceiling  d2d|^layer    [a-z+]|CUDA graph" "$out/layer.log"
for layer_env in DSINFER_CUDA_MOE_JOBS=1 DSINFER_CUDA_MMA_CFG=2 DSINFER_CUDA_MMA_CFG=3; do
  env $layer_env build-cuda/bench_cuda --layer > "$out/layer-$layer_env.log" 2>&1 || status=1
  echo "$layer_env: $(grep "CUDA graph" "$out/layer-$layer_env.log" | tr -s ' ')"
done
model=$(mktemp -d)
trap 'rm -rf "$model"' EXIT
build-cuda/dsinfer make-synthetic --like flash --layers 2 --out "$model" > /dev/null 2>&1 || status=1
peer=${2:-}
# Settings not yet decided (docs/notes.md, "CUDA backend"), two rounds, each setting once per round.
settings=("" "DSINFER_CUDA_DECODE_TABLES=2" "DSINFER_CUDA_PARAM_UPLOAD=1"
          "DSINFER_CUDA_DECODE_TABLES=2 DSINFER_CUDA_PARAM_UPLOAD=1" "DSINFER_CUDA_SIDE_LAYOUT=1"
          "DSINFER_CUDA_SIDE_LAYOUT=2" "DSINFER_CUDA_SIDE_LAYOUT=3" "DSINFER_CUDA_MOE_JOBS=1"
          "DSINFER_CUDA_HC_ASIDE=1" "DSINFER_CUDA_MOE_JOBS=1 DSINFER_CUDA_HC_ASIDE=1" "DSINFER_CUDA_MMA_CFG=2")
for round in 1 2; do
  if [ -n "$peer" ]; then
    "$peer" bench --device cuda --model "$model" --prompt 16 --context 1024 --batch 1,8 --decode 40 \
      > "$out/e2e-peer-$round.log" 2>&1 || status=1
    echo "peer (round $round): $(grep '^decode' "$out/e2e-peer-$round.log" | tr -s ' ' | tr '\n' '|')"
  fi
  for i in "${!settings[@]}"; do
    env ${settings[$i]} build-cuda/dsinfer bench --device cuda --model "$model" --prompt 16 --context 1024 \
      --batch 1,8 --decode 40 > "$out/e2e-$i-$round.log" 2>&1 || status=1
    echo "${settings[$i]:-defaults} (round $round): $(grep '^decode' "$out/e2e-$i-$round.log" | tr -s ' ' | tr '\n' '|')"
  done
done
if command -v ncu > /dev/null; then
  scripts/profile-decode.sh "$model" 1 build-cuda/dsinfer > "$out/profile.log" 2>&1 || status=1
  head -12 "$out/profile.log"
fi
if command -v nsys > /dev/null; then
  for tables in 0 2; do
    DSINFER_CUDA_DECODE_TABLES=$tables scripts/decode-timeline.sh "$model" build-cuda/dsinfer 2 \
      > "$out/timeline-$tables.log" 2>&1 || status=1
    echo "timeline, decode tables $tables:"
    grep -A4 "^step" "$out/timeline-$tables.log" | head -12
  done
fi
exit $status
