#!/usr/bin/env bash
# The test suite in one command on a fresh Debian machine: installs what is missing (system
# packages with apt, a Rust toolchain with rustup), then runs `cargo test --release` — every crate
# of the workspace but the fuzz targets. CI (.ci/run) runs exactly this. Extra arguments go to
# cargo test, e.g. `scripts/test.sh -p relay`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
exec cargo test --release "$@"
