#!/usr/bin/env bash
# Builds the C/C++ examples against include/voice.h and the static library with -Wall -Wextra
# -Werror, then runs them against a relay on 127.0.0.1 under valgrind (leak check full; any error
# fails). Used by .ci/run; run it by hand the same way: examples/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/examples
mkdir -p "$out"
cargo build --release -p voice_ffi
cargo build --release --bin relay --bin voice-bot
lib=target/release/libvoice_ffi.a
libs=(-lasound -lpthread -ldl -lm)
cflags=(-std=c11 -Wall -Wextra -Werror -O1 -g -Iinclude)
cxxflags=(-std=c++17 -Wall -Wextra -Werror -O1 -g -Iinclude)
gcc "${cflags[@]}" examples/client.c "$lib" "${libs[@]}" -o "$out/client"
gcc "${cflags[@]}" examples/sansio_loopback.c "$lib" "${libs[@]}" -o "$out/sansio_loopback"
g++ "${cxxflags[@]}" examples/stream.cpp "$lib" "${libs[@]}" -o "$out/stream_cpp"
# The header must also compile as C++ on its own.
printf '#include "voice.h"\nint main() { return voice_abi_version() == VOICE_ABI_VERSION ? 0 : 1; }\n' \
  > "$out/header_check.cpp"
g++ "${cxxflags[@]}" "$out/header_check.cpp" "$lib" "${libs[@]}" -o "$out/header_check"

vg=(valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-possibly-lost=no
    --suppressions=examples/valgrind.supp)
"${vg[@]}" "$out/header_check"
"${vg[@]}" "$out/sansio_loopback"
"${vg[@]}" "$out/stream_cpp"

# A relay on a free loopback port, a bot talking in the channel, and the C client joining it.
# The bot talks until the C client is done (it is stopped then): under valgrind the client needs
# several seconds to start and finish its TLS handshake, and must hear the bot until its final
# stats. Its JSON lines are written as they happen, so stopping it loses nothing checked below.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# TLS with a self-signed identity kept under $out; the relay prints `fingerprint sha256:…`.
target/release/relay --listen "127.0.0.1:$port" --identity-dir "$out/relay-identity" >"$out/relay.log" 2>&1 &
relay_pid=$!
trap 'kill $relay_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
fp=
for _ in $(seq 50); do
  fp=$(sed -n 's/^fingerprint //p' "$out/relay.log")
  [ -n "$fp" ] && break
  sleep 0.1
done
[ -n "$fp" ] || { echo "the relay printed no fingerprint"; exit 1; }
python3 - "$out/tone.wav" <<'PY'
import math, struct, sys, wave
w = wave.open(sys.argv[1], "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(48000)
w.writeframes(b"".join(struct.pack("<h", int(6000 * math.sin(2 * math.pi * 250 * i / 48000))) for i in range(48000 * 2)))
w.close()
PY
target/release/voice-bot --server "127.0.0.1:$port" --fingerprint "$fp" --name bot --tone 440 --duration 120 \
  --chat "hi from the bot" >"$out/bot.jsonl" &
bot_pid=$!
sleep 0.5
VOICE_RELAY_FINGERPRINT="$fp" "${vg[@]}" "$out/client" "127.0.0.1:$port" c-client "$out/tone.wav" "$out/heard.wav" 4 1 \
  | tee "$out/client.log"
kill "$bot_pid" 2>/dev/null || true
wait "$bot_pid" 2>/dev/null || true
grep -q "from #1: received [1-9]" "$out/client.log" || { echo "the C client heard nobody"; exit 1; }
grep -q '"text":"hello from C"' "$out/bot.jsonl" || { echo "the bot did not get the C client's chat"; exit 1; }
echo "examples: ok"
