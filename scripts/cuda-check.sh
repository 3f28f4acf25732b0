#!/usr/bin/env bash
# On a machine with an NVIDIA Hopper GPU: build the CUDA configuration, run the GPU tests, then the
# benchmarks docs/benchmarks.md records (one Flash layer's decode kernels, 2 synthetic Flash layers end
# to end at batch 1 and 8, the per-kernel profile of a decode step). Logs go to OUT (default
# cuda-check-out/); a summary is printed. Extra environment (e.g. DSINFER_CUDA_FUSED=0) applies to all.
# Usage: scripts/cuda-check.sh [OUT]
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
model=$(mktemp -d)
trap 'rm -rf "$model"' EXIT
build-cuda/dsinfer make-synthetic --like flash --layers 2 --out "$model" > /dev/null 2>&1 || status=1
build-cuda/dsinfer bench --device cuda --model "$model" --prompt 16 --context 1024 --batch 1,8 --decode 40 \
  > "$out/e2e.log" 2>&1 || status=1
grep "^decode" "$out/e2e.log"
if command -v ncu > /dev/null; then
  scripts/profile-decode.sh "$model" 1 build-cuda/dsinfer > "$out/profile.log" 2>&1 || status=1
  head -12 "$out/profile.log"
fi
exit $status
