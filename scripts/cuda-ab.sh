#!/usr/bin/env bash
# GPU switches measured against the defaults, on a machine with an NVIDIA Hopper GPU: builds what it
# needs (BUILD, default build-cuda; configured like scripts/cuda-check.sh if it has no cache yet), runs
# the three CUDA test binaries side by side (with the first switch set, so its paths are the ones
# tested), then alternates the defaults and each switch ROUNDS times over the decode GEMVs (`bench_cuda
# --gemv`), one Flash layer's graph (`bench_cuda --layer`) and 2 synthetic Flash layers end to end at
# batch 1, 8 and 64. Prints one line a measurement; the logs go to OUT (default cuda-ab-out/).
# Usage: scripts/cuda-ab.sh "VAR=VALUE [VAR=VALUE ...][|VAR=VALUE ...]" [ROUNDS] [OUT]
#   e.g. scripts/cuda-ab.sh DSINFER_CUDA_MMA_STAGE=0 2
#        scripts/cuda-ab.sh "DSINFER_CUDA_MMA_CFG=7|DSINFER_CUDA_MMA_CFG=8" 2   (two switches, each
#        against the defaults)
# On a machine whose image lacks the -dev packages, set DEV_DEBS to a folder of them (`scripts/dev-debs.sh
# fetch DIR` on a Debian machine): the build is configured against them (`scripts/dev-debs.sh configure`)
# and the binaries run with their libraries. NCU=1 adds, for the defaults and each switch, Nsight Compute
# on one token's routed experts (`bench_cuda --moe`: the up and down launches of the third call).
set -uo pipefail
cd "$(dirname "$0")/.."
switches=${1:?usage: scripts/cuda-ab.sh "VAR=VALUE ...[|VAR=VALUE ...]" [ROUNDS] [OUT]}
IFS='|' read -r -a sides <<< "$switches"
switch=${sides[0]}
rounds=${2:-2}
out=${3:-cuda-ab-out}
build=${BUILD:-build-cuda}
mkdir -p "$out"
if [ -n "${DEV_DEBS:-}" ]; then
  scripts/dev-debs.sh configure "$DEV_DEBS" "$build" > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
  export CPATH=/tmp/dsinfer-dev-prefix/usr/include LD_LIBRARY_PATH=/tmp/dsinfer-dev-prefix/usr/lib/x86_64-linux-gnu
elif [ ! -f "$build/CMakeCache.txt" ]; then
  nvcc=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
  [ -n "$nvcc" ] || { echo "cuda-ab: nvcc not found" >&2; exit 1; }
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDSINFER_CUDA=ON -DDSINFER_TESTS=ON \
    -DCMAKE_CUDA_COMPILER="$nvcc" > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
fi
cmake --build "$build" -j"$(nproc)" --target cuda_test_cuda_ops cuda_test_cuda_replay cuda_test_cuda_serving \
  bench_cuda dsinfer > "$out/build.log" 2>&1 || { grep -m5 -B2 -A10 error "$out/build.log"; exit 1; }
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
status=0
for t in ops replay serving; do
  env $switch "$build/tests/cuda_test_cuda_$t" > "$out/test-$t.log" 2>&1 &
done
wait
for t in ops replay serving; do
  echo "test $t ($switch): $(grep -E '^\[  (PASSED|FAILED) ' "$out/test-$t.log" | tr '\n' ' ')"
  grep -q '^\[  PASSED  \]' "$out/test-$t.log" && ! grep -q '^\[  FAILED  \]' "$out/test-$t.log" || status=1
done
model=$(mktemp -d)
trap 'rm -rf "$model"' EXIT
"$build/dsinfer" make-synthetic --like flash --layers 2 --out "$model" > /dev/null 2>&1 || status=1
gemv() {  # name, time and share of the copy bandwidth of each tensor-core line
  grep -E 'tensor-core|moe_experts' "$1" | sed -E 's/^decode +//; s/ +/ /g; s/ m=1 \[[ 0-9x]*\]//; s/ [0-9.]+ MB//;
    s/ [0-9]+ GB\/s//; s/ of copy//; s/ *\((tensor-core GEMV)\)//' | tr '\n' '|'
}
side_env() {  # side 0: the defaults; side i > 0: switch i. Sets envs and tag.
  envs=""
  tag=defaults
  if [ "$1" -gt 0 ]; then envs=${sides[$(($1 - 1))]}; tag=switch$1; fi
}
for round in $(seq "$rounds"); do
  for side in $(seq 0 ${#sides[@]}); do
    side_env "$side"
    tag=$tag-$round
    env $envs "$build/bench_cuda" --gemv > "$out/gemv-$tag.log" 2>&1 || status=1
    echo "gemv   $tag: $(gemv "$out/gemv-$tag.log")"
    env $envs "$build/bench_cuda" --layer > "$out/layer-$tag.log" 2>&1 || status=1
    echo "layer  $tag: $(grep -A2 current "$out/layer-$tag.log" | grep 'CUDA graph' | sed -E 's/ +/ /g')"
    env $envs "$build/dsinfer" bench --device cuda --model "$model" --prompt 16 --context 1024 --batch 1,8,64 \
      --decode 24 > "$out/e2e-$tag.log" 2>&1 || status=1
    echo "e2e    $tag: $(grep '^decode' "$out/e2e-$tag.log" | sed -E 's/ +/ /g; s/^decode batch //; s/: [0-9]+ steps,/:/;
      s/ tokens\/s.*//' | tr '\n' '|')"
  done
done
if [ "${NCU:-0}" = 1 ]; then
  for side in $(seq 0 ${#sides[@]}); do
    side_env "$side"
    env $envs timeout 180 ncu --kernel-name regex:gemv_mma_kernel --launch-skip 4 --launch-count 2 \
      --section SpeedOfLight --section LaunchStats --section Occupancy --section SchedulerStats \
      --section WarpStateStats "$build/bench_cuda" --moe > "$out/ncu-$tag.log" 2>&1 || status=1
    echo "ncu    $tag: $(grep -E 'Duration|DRAM Throughput|One or More Eligible|Issued Warp|Achieved Active Warps' \
      "$out/ncu-$tag.log" | sed -E 's/ +/ /g' | tr '\n' '|')"
  done
fi
exit $status
