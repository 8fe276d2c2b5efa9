#!/usr/bin/env bash
# Capture-processing benchmark (issue 15): espeak-ng speech mixed with generated noise (white, pink,
# babble of four voices, 50 Hz hum with harmonics, fan band noise) at 0/5/10/20 dB SNR and clean,
# through no processing, RNNoise as Mumble runs it (nnnoiseless) and ours (voice_core::capture):
# PESQ-WB, STOI and DNSMOS OVRL; echo scenes (far-end speech through a synthetic room, RT60
# 200-400 ms, device delay 40-120 ms, 0 or 10 dB signal-to-echo, then double talk, continuous or in
# bursts; see benches/apm/ECHO.md): ERLE, near-end PESQ and AECMOS; the speech
# detector's hit and false-trigger rates at 10 dB; CPU per stream. Prints markdown tables.
#
#   benches/apm/run.sh [--quick] [--echo-only] [--work DIR] [--voice-apm PATH] [-j N] [--extra FLAGS]
#
# --quick: one clip, white and pink at 5 dB, the echo scene once; PESQ, STOI and ERLE only (no
#          DNSMOS / AECMOS models): well under a minute once built. CI runs this.
# --echo-only: the echo table alone (five scenes, with AECMOS unless --quick).
# --extra FLAGS: voice-apm flags for ours (tuning), e.g. --extra "--delay-ms 80".
#
# Installs what it needs: espeak-ng and sox from Debian (apt-get; run as root) and a local venv
# `.venv` (git-ignored) with numpy, scipy, pesq, pystoi, speechmos (DNSMOS and AECMOS, the models
# ship in the package), onnxruntime and librosa from PyPI. The clips are synthesised locally.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

voice_apm=""
work="$CARGO_TARGET_DIR/apm-bench"
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --voice-apm) voice_apm="$2"; shift 2 ;;
        --work) work="$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done

need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c \
    'import pesq, pystoi, scipy, numpy, speechmos.dnsmos, speechmos.aecmos, onnxruntime, librosa' 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/pip install -q numpy scipy pesq pystoi speechmos onnxruntime librosa
fi

mkdir -p "$work"
if [ -z "$voice_apm" ]; then
    cargo build --release -q -p voice_sim --bin voice-apm
    voice_apm="$CARGO_TARGET_DIR/release/voice-apm"
fi
exec .venv/bin/python benches/apm/apm.py --voice-apm "$(realpath "$voice_apm")" --work "$work" \
    ${args[@]+"${args[@]}"}
