#!/usr/bin/env bash
# Installs what dsinfer needs to build and test (Debian packages, the npm client used by the server
# tests). Idempotent: installs only what is missing. Runs as root, or through sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(cmake g++ make pkg-config nlohmann-json3-dev libcpp-httplib-dev libpcre2-dev libgtest-dev libbenchmark-dev
      nodejs npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# nodejs/npm may come from elsewhere than Debian; a working node and npm on PATH are enough.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -r -a missing <<<"${missing[*]}"
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The server's end-to-end tests drive it with the official openai npm client (versions pinned in
# tests/server/package-lock.json).
if [ -f tests/server/package.json ] && [ ! -d tests/server/node_modules/openai ]; then
  echo "setup: installing the npm packages of tests/server"
  (cd tests/server && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup: done"
