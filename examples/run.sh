#!/usr/bin/env bash
# Builds the C/C++ examples against include/voice.h and the static library with -Wall -Wextra
# -Werror -pedantic, then runs them twice:
#  1. under valgrind memcheck (leak check full; any error, definite or *possible* leak fails), the
#     client against a relay on 127.0.0.1 with a bot talking to it;
#  2. built with clang's AddressSanitizer + UndefinedBehaviorSanitizer (LeakSanitizer on, every
#     report fatal).
# The programs: header_check (the header alone, as C++), sansio_loopback (encoder → lossy link →
# receiver, fixed and adaptive playout), spatial (positions on the encoder and receiver, stereo
# rendering by a spatializer), stream.cpp (RAII from C++), misuse (every integrator
# mistake from issue 17 returns a code), apm (the sans-IO capture processor cancels an echo),
# reconnect (a relay restart under a client) and client
# (a full client in a channel). Then scripts/test-c-install.sh checks the installed library
# (system_opus.c, examples/cmake). Used by .ci/run; run it by hand the same way: examples/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
tdir=${CARGO_TARGET_DIR:-target}
out=$tdir/examples
mkdir -p "$out"
# The workspace's libraries and binaries, resolved as `cargo test --release` resolves them (see the
# feature pins in benches/Cargo.toml), so after the test suite nothing is rebuilt.
cargo build --release --lib --bins
lib=$tdir/release/libvoice_ffi.a
relay_bin=$tdir/release/relay
libs=(-lasound -lpthread -ldl -lm)
cflags=(-std=c11 -Wall -Wextra -Werror -pedantic -O1 -g -Iinclude)
cxxflags=(-std=c++17 -Wall -Wextra -Werror -pedantic -O1 -g -Iinclude)
san=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
c_programs=(client sansio_loopback misuse reconnect apm spatial)
# The header must also compile as C++ on its own.
printf '#include "voice.h"\nint main() { return voice_abi_version() == VOICE_ABI_VERSION ? 0 : 1; }\n' \
  > "$out/header_check.cpp"

# Independent jobs (the compilers, the sans-IO programs) run `par` at a time: valgrind runs all of
# a program's threads on one core, and each link reads the whole static library. A job's output
# goes to a file and is printed, in start order, by `finish`, so the log reads as if they ran one
# after the other; `finish` fails if any of them failed.
par=$(nproc)
job_pids=()
job_names=()
# start NAME COMMAND...: COMMAND in the background, its output in $out/NAME.out.
start() {
  local name=$1
  shift
  while [ "$(jobs -rp | wc -l)" -ge "$par" ]; do wait -n || true; done
  "$@" >"$out/$name.out" 2>&1 &
  job_pids+=($!)
  job_names+=("$name")
}
finish() {
  local i failed=()
  for i in "${!job_pids[@]}"; do
    wait "${job_pids[$i]}" || failed+=("${job_names[$i]}")
    cat "$out/${job_names[$i]}.out"
  done
  job_pids=()
  job_names=()
  [ ${#failed[@]} -eq 0 ] || { echo "failed: ${failed[*]}"; exit 1; }
}
for p in "${c_programs[@]}"; do
  start "cc-$p" gcc "${cflags[@]}" "examples/$p.c" "$lib" "${libs[@]}" -o "$out/$p"
  start "cc-$p.asan" clang "${cflags[@]}" "${san[@]}" "examples/$p.c" "$lib" "${libs[@]}" -o "$out/$p.asan"
done
start cc-stream_cpp g++ "${cxxflags[@]}" examples/stream.cpp "$lib" "${libs[@]}" -o "$out/stream_cpp"
start cc-stream_cpp.asan clang++ "${cxxflags[@]}" "${san[@]}" examples/stream.cpp "$lib" "${libs[@]}" -o "$out/stream_cpp.asan"
start cc-header_check g++ "${cxxflags[@]}" "$out/header_check.cpp" "$lib" "${libs[@]}" -o "$out/header_check"
finish

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

vg=(valgrind --quiet --error-exitcode=99 --leak-check=full --show-possibly-lost=yes
    --errors-for-leak-kinds=definite,possible --suppressions=examples/valgrind.supp)
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0:exitcode=98
export LSAN_OPTIONS=suppressions=$PWD/examples/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# run NAME ARGS...: the program under valgrind, then its sanitizer build.
run() {
  local p=$1
  shift
  echo "== $p (valgrind)"
  "${vg[@]}" "$out/$p" "$@"
  if [ -x "$out/$p.asan" ]; then
    echo "== $p (asan+ubsan)"
    "$out/$p.asan" "$@"
  fi
}

# The programs without a relay, longest first (under valgrind: sansio_loopback ~45 s, apm and
# misuse ~35 s each, the others a few seconds).
start sansio_loopback run sansio_loopback
start apm run apm
start misuse run misuse "$(free_port)"
start spatial run spatial
start stream_cpp run stream_cpp
start header_check "${vg[@]}" "$out/header_check"
finish
# reconnect.c starts the relay with its identity in ./relay-identity; its token signing key is
# created there too, by the relay or by the first `relay token` (whichever comes first).
VOICE_ACCESS_TOKEN=$("$relay_bin" token --identity-dir relay-identity --name restart-c) \
  run reconnect "$relay_bin" "$(free_port)"

# A relay on a free loopback port, a bot talking in the channel, and the C client joining it.
port=$(free_port)
# TLS with a self-signed identity kept under $out; the relay prints `fingerprint sha256:…`.
"$relay_bin" --listen "127.0.0.1:$port" --identity-dir "$out/relay-identity" >"$out/relay.log" 2>&1 &
relay_pid=$!
bot_pid=
trap 'kill $relay_pid $bot_pid 2>/dev/null || true' EXIT
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
# Access tokens from the relay's own signing key (created next to its certificate), one per name.
mint() { "$relay_bin" token --identity-dir "$out/relay-identity" --name "$1"; }
python3 - "$out/tone.wav" <<'PY'
import math, struct, sys, wave
w = wave.open(sys.argv[1], "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(48000)
w.writeframes(b"".join(struct.pack("<h", int(6000 * math.sin(2 * math.pi * 250 * i / 48000))) for i in range(48000 * 2)))
w.close()
PY
# The bot talks until both clients are done (valgrind's start-up time and the TLS handshake vary
# with load); its JSON lines are written as they happen, so stopping it loses nothing.
"$tdir/release/voice-bot" --server "127.0.0.1:$port" --fingerprint "$fp" --token "$(mint bot)" --name bot --tone 440 --duration 300 \
  --chat "hi from the bot" >"$out/bot.jsonl" &
bot_pid=$!
sleep 0.5
echo "== client (valgrind)"
VOICE_RELAY_FINGERPRINT="$fp" VOICE_ACCESS_TOKEN="$(mint c-client)" "${vg[@]}" "$out/client" "127.0.0.1:$port" c-client "$out/tone.wav" "$out/heard.wav" 4 1 \
  | tee "$out/client.log"
echo "== client (asan+ubsan)"
VOICE_RELAY_FINGERPRINT="$fp" VOICE_ACCESS_TOKEN="$(mint c-client-asan)" "$out/client.asan" "127.0.0.1:$port" c-client-asan "$out/tone.wav" "$out/heard-asan.wav" 3 1 \
  | tee "$out/client-asan.log"
kill "$bot_pid" 2>/dev/null || true
wait "$bot_pid" 2>/dev/null || true
grep -q "from #1: received [1-9]" "$out/client.log" || { echo "the C client heard nobody"; exit 1; }
grep -q "from #1: received [1-9]" "$out/client-asan.log" || { echo "the ASan C client heard nobody"; exit 1; }
grep -q '"text":"hello from C"' "$out/bot.jsonl" || { echo "the bot did not get the C client's chat"; exit 1; }
# Packaging: the installed layout, pkg-config, CMake find_package(Voice), and the static library
# (voice_* only) linked beside Debian's libopus.
scripts/test-c-install.sh
echo "examples: ok"
