#!/usr/bin/env bash
# Speech-quality benchmark: runs `voice-sim` over every built-in network profile with both playout
# policies and FEC on/off on a few synthetic speech clips, and prints a table (concealment,
# FEC recovery, buffer delay, time-scaling, PESQ).
#
#   benches/quality.sh [--seeds N] [--quick]
#
# Installs what it needs: espeak-ng and sox from Debian (apt-get; run as root), and a local venv
# `.venv` (git-ignored) with numpy, scipy and `pesq` (ITU-T P.862 / P.862.2) from PyPI.
# Nothing else is downloaded: the clips are synthesised locally by espeak-ng.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import pesq, scipy, numpy' 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/pip install -q numpy scipy pesq
fi
cargo build --release -q -p voice_core --bin voice-sim
exec .venv/bin/python benches/quality/quality.py --voice-sim "$CARGO_TARGET_DIR/release/voice-sim" \
    --work "$CARGO_TARGET_DIR/quality" "$@"
