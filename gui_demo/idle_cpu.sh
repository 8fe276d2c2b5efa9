#!/usr/bin/env bash
# Measures gui_demo's CPU use while connected and idle: under Xvfb (software OpenGL), connected to
# a local relay, nobody speaking, overlay closed. Prints the share of one core over MEASURE seconds
# (the target of issue 19 is at most 2 %).
#
#   gui_demo/idle_cpu.sh            Environment: PORT (7472), DISPLAY_NUM (98), SETTLE (5), MEASURE (20),
#                                   TALK_KEY (V; Mouse8 measures a mouse button followed system-wide)
#
# Installs Xvfb and Mesa with apt-get if missing (as root, or through sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PORT=${PORT:-7472}
DISPLAY_NUM=${DISPLAY_NUM:-98}
SETTLE=${SETTLE:-5}
MEASURE=${MEASURE:-20}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release

pkgs=(xvfb libgl1-mesa-dri libegl1 libgl1 libxkbcommon-x11-0 libxcursor1 libxrandr2 libxi6 libx11-xcb1)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cargo build --release -p relay -p gui_demo --bins

WORK=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

Xvfb ":$DISPLAY_NUM" -screen 0 1280x800x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
pids+=($!)
# TLS and tokens as everywhere: the relay's identity (certificate and token key) lives in $WORK.
"$BIN/relay" --listen "127.0.0.1:$PORT" --identity-dir "$WORK/id" >"$WORK/relay.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q '^fingerprint ' "$WORK/relay.log" && break; sleep 0.1; done
fingerprint=$(sed -n 's/^fingerprint //p' "$WORK/relay.log")
[ -n "$fingerprint" ] || { echo "the relay did not start:" >&2; cat "$WORK/relay.log" >&2; exit 1; }
"$BIN/relay" token --name idle --identity-dir "$WORK/id" >"$WORK/token"
DISPLAY=":$DISPLAY_NUM" LIBGL_ALWAYS_SOFTWARE=1 XDG_DATA_HOME="$WORK/data" \
  "$BIN/gui_demo" --server "127.0.0.1:$PORT" --name idle --connect \
  --fingerprint "$fingerprint" --token-file "$WORK/token" \
  --input null --output null --mode ptt --talk-key "${TALK_KEY:-V}" >"$WORK/gui.log" 2>&1 &
gui=$!
pids+=($gui)
sleep "$SETTLE"

ticks() { awk '{print $14 + $15}' "/proc/$gui/stat"; }
# Per thread (name: ticks), to tell the window's share from the engine's.
threads() {
  for t in /proc/$gui/task/*; do
    printf '%s %s\n' "$(cat "$t/comm" | tr ' ' '_')" "$(awk '{print $14 + $15}' "$t/stat")"
  done | sort
}
hz=$(getconf CLK_TCK)
t0=$(ticks)
threads >"$WORK/t0"
sleep "$MEASURE"
t1=$(ticks)
threads >"$WORK/t1"
awk -v hz="$hz" -v s="$MEASURE" 'NR == FNR { a[$1] += $2; next } { b[$1] += $2 }
  END { for (k in b) if (b[k] - a[k] > 0) printf "  %-16s %.1f %%\n", k, 100 * (b[k] - a[k]) / hz / s }' \
  "$WORK/t0" "$WORK/t1"
awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$MEASURE" \
  'BEGIN { printf "gui_demo idle CPU: %.1f %% of one core over %d s\n", 100 * (b - a) / hz / s, s }'
