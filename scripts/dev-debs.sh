#!/usr/bin/env bash
# Building on a machine that has the runtime libraries and nvcc but not the -dev packages (and no apt),
# e.g. a GPU node's image. Two steps:
#   scripts/dev-debs.sh fetch DIR        on a Debian machine: download the build's -dev packages into DIR
#   scripts/dev-debs.sh build DIR [BUILD] [cmake args...]
#                                        on the other machine: unpack DIR's packages into a prefix
#                                        (/tmp/dsinfer-dev-prefix), configure BUILD (default build-cuda,
#                                        Release, CUDA and tests on) against it and build
#   scripts/dev-debs.sh configure DIR [BUILD] [cmake args...]
#                                        the same without the build (then build the targets you need
#                                        with CPATH=/tmp/dsinfer-dev-prefix/usr/include set)
# After `build`, run the binaries with LD_LIBRARY_PATH=/tmp/dsinfer-dev-prefix/usr/lib/x86_64-linux-gnu
# (libcpp-httplib is a shared library). The runtime libssl3, zlib1g and libpcre2-16/32 are taken from
# the machine.
set -uo pipefail
prefix=/tmp/dsinfer-dev-prefix
pkgs=(nlohmann-json3-dev libpcre2-dev libpcre2-8-0 libpcre2-posix3 libcpp-httplib-dev libcpp-httplib0.11
      libssl-dev zlib1g-dev libbrotli-dev libbrotli1 libgtest-dev libgmock-dev googletest libbenchmark-dev
      libbenchmark1debian pkgconf pkgconf-bin libpkgconf3)
lib=$prefix/usr/lib/x86_64-linux-gnu
case "${1:-}" in
  fetch)
    [ -n "${2:-}" ] || { echo "usage: $0 fetch DIR" >&2; exit 2; }
    mkdir -p "$2" && cd "$2" && apt-get download "${pkgs[@]}"
    ;;
  build | configure)
    [ -n "${2:-}" ] || { echo "usage: $0 $1 DIR [BUILD] [cmake args...]" >&2; exit 2; }
    mode=$1
    debs=$(cd "$2" && pwd)
    build=${3:-build-cuda}
    shift $(( $# >= 3 ? 3 : 2 ))
    ls "$debs"/*.deb > /dev/null 2>&1 || { echo "dev-debs: no .deb files in $debs" >&2; exit 1; }
    mkdir -p "$prefix"
    for f in "$debs"/*.deb; do dpkg -x "$f" "$prefix" || exit 1; done
    find "$prefix" -name '*.pc' -exec sed -i "s#=/usr#=$prefix/usr#g" {} +
    cd "$(dirname "$0")/.."
    nvcc=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
    [ -n "$nvcc" ] || { echo "dev-debs: nvcc not found" >&2; exit 1; }
    PKG_CONFIG_PATH=$lib/pkgconfig:$prefix/usr/share/pkgconfig CMAKE_PREFIX_PATH=$prefix/usr \
      CPATH=$prefix/usr/include cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDSINFER_CUDA=ON \
      -DDSINFER_TESTS=ON -DCMAKE_CUDA_COMPILER="$nvcc" -DPKG_CONFIG_EXECUTABLE=$prefix/usr/bin/pkgconf "$@" \
      || exit 1
    [ "$mode" = build ] || exit 0
    CPATH=$prefix/usr/include cmake --build "$build" -j "$(nproc)"
    ;;
  *)
    echo "usage: $0 fetch DIR | build DIR [BUILD] [cmake args...] | configure DIR [BUILD] [cmake args...]" >&2
    exit 2
    ;;
esac
