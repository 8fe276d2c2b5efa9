#!/usr/bin/env bash
# Receive-path quality benchmark: our playout (adaptive, fixed) against the speexdsp jitter buffer
# driven as Mumble drives it and a plain 2-packet receiver (with and without in-band FEC), all fed
# the same Opus packets on the same traces of the path classes (clean, wifi, lte, bursty, reorder,
# dup), at tick phases 0/5/10/15 ms, on three espeak-ng clips. Prints PESQ-WB (median over start
# offsets) / ViSQOL v3 speech / PLCMOS v2 @ mouth-to-ear ms (read from the audio) and concealed
# frames per class and receiver. Description and last table: docs/QUALITY.md.
#
#   benches/quality.sh [--quick] [--classes clean,wifi,...] [--receivers adaptive,fixed,speex,plain,plain-fec]
#                      [--seeds N] [--seed-from K] [--phases 0,5,10,15] [--metrics pesq,visqol,plcmos]
#                      [--voice-sim PATH] [--work DIR] [-j N] [--keep]
#   benches/quality.sh --tsm 3,-3    how audible forced time-scaling is (ours vs sox WSOLA)
#
# --quick: adaptive and fixed only, PESQ + PLCMOS (a few minutes on idle cores).
# --voice-sim PATH: measure another build (otherwise this tree's is built, release).
#
# Installs what it needs: espeak-ng, sox, libspeexdsp-dev, libopus-dev, pkg-config, gcc from Debian
# (apt-get; run as root), and a local venv `.venv` (git-ignored) with numpy, scipy, pesq,
# visqol-python[lattice] (ViSQOL v3 with its LiteRT lattice model), speechmos (PLCMOS v2),
# onnxruntime and librosa from PyPI. The clips are synthesised locally; no model is downloaded
# beyond what those packages ship.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

voice_sim=""
work="$CARGO_TARGET_DIR/quality"
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --voice-sim) voice_sim="$2"; shift 2 ;;
        --work) work="$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done

need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
command -v cc >/dev/null || need+=(gcc)
command -v pkg-config >/dev/null || need+=(pkg-config)
pkg-config --exists opus 2>/dev/null || need+=(libopus-dev)
pkg-config --exists speexdsp 2>/dev/null || need+=(libspeexdsp-dev)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c \
    'import pesq, scipy, numpy, visqol, speechmos.plcmos, onnxruntime, librosa, ai_edge_litert' 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/pip install -q numpy scipy pesq "visqol-python[lattice]" speechmos onnxruntime librosa
fi

mkdir -p "$work"
if [ -z "$voice_sim" ]; then
    cargo build --release -q -p voice_sim --bin voice-sim
    voice_sim="$CARGO_TARGET_DIR/release/voice-sim"
fi
voice_sim="$(realpath "$voice_sim")"
# shellcheck disable=SC2046
cc -O2 -Wall -Wextra -Werror -o "$work/baselines" benches/quality/baselines.c \
    $(pkg-config --cflags --libs opus speexdsp) -lm
exec .venv/bin/python benches/quality/quality.py --voice-sim "$voice_sim" \
    --baselines "$work/baselines" --work "$work" ${args[@]+"${args[@]}"}
