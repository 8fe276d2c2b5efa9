#!/usr/bin/env bash
# Takes docs/gui_demo.png and docs/gui_demo_overlay.png: runs gui_demo under Xvfb (software
# OpenGL) against a local relay while voice-bots talk and chat; the first picture is the main
# window, the second the same window with the diagnostics overlay (F3) open.
#
#   gui_demo/screenshot.sh [OUT.png [OVERLAY_OUT.png]]
#                             (default: docs/gui_demo.png docs/gui_demo_overlay.png)
#
# Installs what it needs with apt-get (as root, or through sudo): Xvfb, xwd, ImageMagick, Mesa.
# Environment: PORT (relay port, default 7471), WAIT (seconds of talking before the shot, 20),
# DISPLAY_NUM (Xvfb display, 99).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${1:-docs/gui_demo.png}
OVERLAY_OUT=${2:-docs/gui_demo_overlay.png}
PORT=${PORT:-7471}
WAIT=${WAIT:-20}
DISPLAY_NUM=${DISPLAY_NUM:-99}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release

pkgs=(xvfb x11-apps xdotool imagemagick libgl1-mesa-dri libegl1 libgl1 libxkbcommon-x11-0 libxcursor1
      libxrandr2 libxi6 libx11-xcb1 fonts-dejavu-core)
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

cargo build --release -p relay -p voice_client -p gui_demo --bins

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
# TLS and tokens as everywhere: the relay's identity (certificate and token key) lives in $WORK;
# every client pins its fingerprint and presents a token minted for its name.
"$BIN/relay" --listen "127.0.0.1:$PORT" --identity-dir "$WORK/id" >"$WORK/relay.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q '^fingerprint ' "$WORK/relay.log" && break; sleep 0.1; done
fingerprint=$(sed -n 's/^fingerprint //p' "$WORK/relay.log")
[ -n "$fingerprint" ] || { echo "the relay did not start:" >&2; cat "$WORK/relay.log" >&2; exit 1; }
token() { "$BIN/relay" token --name "$1" --identity-dir "$WORK/id"; }

# The demo, scripted by flags: connect at once, a tone as the microphone (so the level
# meter moves and the bots hear us), no speaker. Its settings go to a throw-away XDG dir.
token alice >"$WORK/alice.token"
DISPLAY=":$DISPLAY_NUM" LIBGL_ALWAYS_SOFTWARE=1 XDG_DATA_HOME="$WORK/data" \
  "$BIN/gui_demo" --server "127.0.0.1:$PORT" --name alice --connect \
  --fingerprint "$fingerprint" --token-file "$WORK/alice.token" \
  --input tone:220 --output null --mode continuous --size 1280x800 >"$WORK/gui.log" 2>&1 &
gui=$!
pids+=($gui)
sleep 3

bot() {
  local name=$2
  "$BIN/voice-bot" --server "127.0.0.1:$PORT" --fingerprint "$fingerprint" --token "$(token "$name")" \
    --stats-interval 60000 "$@" >>"$WORK/bots.log" 2>&1 &
  pids+=($!)
}
bot --name bob --channel Lobby --tone 300 --duration 120 --chat "hi, bob here" --chat "tone check, 300 Hz"
sleep 2
bot --name carol --channel Lobby --tone 520 --duration 120 --chat "carol joining, can you hear me?"
# dave muted and erin deafened: the tree shows what they did ("mic off", "deaf").
bot --name dave --channel "Team A" --duration 120 --mute --chat "Team A standing by"
bot --name erin --channel "Team B" --duration 120 --deafen

sleep "$WAIT"
if ! kill -0 "$gui" 2>/dev/null; then
  echo "gui_demo exited early:" >&2
  cat "$WORK/gui.log" >&2
  exit 1
fi
mkdir -p "$(dirname "$OUT")" "$(dirname "$OVERLAY_OUT")"
xwd -root -display ":$DISPLAY_NUM" -silent | convert xwd:- "png:$OUT"
echo "wrote $OUT"
# Open the overlay with the status bar's "Diagnostics (F3)" button (top right at 1280x800; without
# a window manager a synthetic F3 does not reach the window reliably).
DISPLAY=":$DISPLAY_NUM" xdotool mousemove 1130 12 sleep 0.3 click 1
sleep 3
xwd -root -display ":$DISPLAY_NUM" -silent | convert xwd:- "png:$OVERLAY_OUT"
echo "wrote $OVERLAY_OUT"
