#!/usr/bin/env bash
# The main job in one command: builds everything, starts a relay on a free loopback port, lets
# one voice-bot talk (a speech-like test signal) while two others listen and record, then prints
# what the listeners measured. Recordings land in target/demo/. On a fresh Debian machine it first
# installs what is missing (scripts/install-deps.sh: apt packages and a Rust toolchain).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
cargo build --release --bin relay --bin voice-bot --bin voice-sim
bin="${CARGO_TARGET_DIR:-target}/release"
out=target/demo
mkdir -p "$out"
# The relay picks a free port and prints `listening on 127.0.0.1:PORT` as its first stdout line,
# then `fingerprint sha256:…` (its TLS certificate, kept in $out/relay-identity), which the bots pin.
coproc RELAY { exec "$bin/relay" --listen 127.0.0.1:0 --identity-dir "$out/relay-identity" 2>"$out/relay.log"; }
relay=$RELAY_PID
trap 'kill $relay 2>/dev/null || true' EXIT
read -r -t 30 first <&"${RELAY[0]}" || { echo "demo: the relay did not start (see $out/relay.log)" >&2; exit 1; }
addr=${first#listening on }
read -r -t 30 second <&"${RELAY[0]}" || { echo "demo: the relay printed no fingerprint" >&2; exit 1; }
fp=${second#fingerprint }
port=${addr##*:}
python3 - "$out/talk.wav" <<'PY'
import math, struct, sys, wave
w = wave.open(sys.argv[1], "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(48000)
frames = []
for i in range(48000 * 4):
    t = i / 48000
    env = (0.5 - 0.5 * math.cos(2 * math.pi * 3 * t)) ** 2
    f0 = 150 + 40 * math.sin(2 * math.pi * 0.9 * t)
    v = sum(math.sin(2 * math.pi * f0 * h * t) / h for h in range(1, 6))
    frames.append(struct.pack("<h", int(7000 * env * v)))
w.writeframes(b"".join(frames)); w.close()
PY
bot="$bin/voice-bot --fingerprint $fp"
# Each bot presents an access token minted with the relay's own signing key (created next to its
# certificate in $out/relay-identity): `relay token --name NAME` is what a game backend does.
mint() { "$bin/relay" token --identity-dir "$out/relay-identity" --name "$1"; }
$bot --server "127.0.0.1:$port" --token "$(mint bob)" --name bob --record "$out/bob.wav" --duration 7 >"$out/bob.jsonl" &
b=$!
$bot --server "127.0.0.1:$port" --token "$(mint carol)" --name carol --record "$out/carol.wav" --duration 7 >"$out/carol.jsonl" &
c=$!
sleep 0.5
$bot --server "127.0.0.1:$port" --token "$(mint alice)" --name alice --play "$out/talk.wav" --duration 5.5 \
  --chat "hello from alice" >"$out/alice.jsonl"
wait $b $c
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
for who in ("bob", "carol"):
    lines = [json.loads(l) for l in open(f"{out}/{who}.jsonl")]
    chats = [l["event"]["Chat"]["text"] for l in lines if "event" in l and "Chat" in l["event"]]
    stats = [l["stats"] for l in lines if "stats" in l]
    final = stats[-1]
    heard = [s for s in stats if s["remotes"]] or [final]
    print(f"{who}: rtt {final['rtt_ms']:.2f} ms, chat {chats}")
    for r in heard[-1]["remotes"]:
        s = r["stream"]
        print(f"  from {r['name'] or r['session']}: received {s['packets_received']} lost {s['packets_lost']} "
              f"late {s['packets_late']} concealed {s['frames_concealed']} fec {s['frames_fec_recovered']} "
              f"mean buffer delay {s['mean_buffer_delay_ms']:.1f} ms jitter {s['jitter_ms']:.2f} ms")
print(f"recordings: {out}/bob.wav {out}/carol.wav")
PY
