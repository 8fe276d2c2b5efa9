#!/usr/bin/env bash
# Makes sure a Rust toolchain new enough for the workspace (rust-version in Cargo.toml) is on PATH.
# Debian's own rustc is too old (Debian 12 ships 1.63) and Debian 12 has no rustup package, so a
# missing toolchain is installed with the official rustup installer into ~/.cargo (curl and
# ca-certificates come from apt). Callers put "${CARGO_HOME:-$HOME/.cargo}/bin" on their PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
need=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml | head -n1)
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

new_enough() { # $1 >= $2 as versions
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

if command -v cargo >/dev/null 2>&1 && command -v rustc >/dev/null 2>&1; then
  have=$(rustc --version | awk '{print $2}')
  if new_enough "$have" "$need"; then
    exit 0
  fi
  if command -v rustup >/dev/null 2>&1; then
    echo "install-rust: rustc $have is older than $need; updating the stable toolchain" >&2
    rustup toolchain install stable --profile minimal -c clippy,rustfmt
    rustup default stable
    exit 0
  fi
  echo "install-rust: rustc $have is older than $need and was not installed by rustup;" \
       "remove it (e.g. apt-get remove rustc cargo) and run this script again" >&2
  exit 1
fi

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! command -v curl >/dev/null 2>&1 || ! dpkg -s ca-certificates >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends curl ca-certificates
fi
echo "install-rust: installing the stable Rust toolchain with rustup into ${CARGO_HOME:-$HOME/.cargo}" >&2
curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
  | sh -s -- -y --no-modify-path --profile minimal -c clippy,rustfmt
