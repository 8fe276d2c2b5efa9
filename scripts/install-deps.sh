#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test the workspace:
# cmake (bundled libopus), libasound2-dev + pkg-config (cpal), the tools the C examples use,
# python3 (the demo and example scripts), and a Rust toolchain (scripts/install-rust.sh).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(cmake pkg-config libasound2-dev gcc g++ valgrind python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
"$(dirname "$0")/install-rust.sh"
