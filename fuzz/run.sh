#!/usr/bin/env bash
# Runs every fuzz target for RUNS executions (default 10 million) or SECONDS (default 900) each,
# whichever comes first, and prints one summary line per target. cargo-fuzz drives libFuzzer;
# on a stable toolchain RUSTC_BOOTSTRAP=1 lets it pass its -Z flags.
#   fuzz/run.sh [RUNS] [SECONDS]        e.g. fuzz/run.sh 100000 60 for a short check
# SANITIZER=none (default: address) builds without AddressSanitizer: 3-5x the executions per
# second. voice_core's unsafe code is its libopus calls (codec), the relay's only in socket batching (not reached
# here), and the bundled libopus is not instrumented either way, so little is lost.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10000000}
secs=${2:-900}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
sanitizer=${SANITIZER:-address}
cargo fuzz build -O -s "$sanitizer"
mkdir -p target/fuzz-logs
for t in $(cargo fuzz list); do
  start=$(date +%s)
  cargo fuzz run -O -s "$sanitizer" "$t" -- -runs="$runs" -max_total_time="$secs" -rss_limit_mb=2048 \
    >"target/fuzz-logs/$t.log" 2>&1 || { echo "$t: CRASH (see target/fuzz-logs/$t.log and fuzz/artifacts/$t)"; exit 1; }
  done_line=$(grep -E "^Done [0-9]+ runs" "target/fuzz-logs/$t.log" | tail -1 || true)
  echo "$t: ${done_line:-stopped by time limit} in $(( $(date +%s) - start )) s"
done
