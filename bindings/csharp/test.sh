#!/usr/bin/env bash
# Tests the C# binding with Debian's Mono (mono-devel: mcs, mono):
#  1. Voice.Native.g.cs is what gen.py makes of include/voice.h today (regenerate if not);
#  2. every struct's Marshal.SizeOf and field offsets, and every constant, equal what the C
#     compiler says for include/voice.h (a C program generated from the same parse);
#  3. tests/Tests.cs against the shared library scripts/build-c-lib.sh builds (the one a game
#     ships): sans-IO loopback, misuse, two clients on a relay on 127.0.0.1.
# Used by .ci/run; by hand: bindings/csharp/test.sh [test names: layout sansio misuse relay]
set -euo pipefail
cd "$(dirname "$0")/../.."
here=bindings/csharp
tdir=${CARGO_TARGET_DIR:-target}
command -v mcs >/dev/null && command -v mono >/dev/null \
  || { echo "bindings/csharp/test.sh needs mcs and mono (apt-get install mono-devel; scripts/install-deps.sh does)" >&2; exit 1; }

work=$(mktemp -d)
# The relay the tests start writes its pid here: stopped even if mono dies.
trap '[ -f "$work/relay.pid" ] && kill "$(cat "$work/relay.pid")" 2>/dev/null; rm -rf "$work"' EXIT
python3 "$here/gen.py" --check --layout "$work"

cargo build --release -p voice_ffi
# The same commands as examples/run.sh, so CI reuses its artefacts (same feature resolution).
cargo build --release --bin relay --bin voice-bot
lib=$tdir/csharp/lib
if [ ! "$lib/libvoice.so" -nt "$tdir/release/libvoice_ffi.a" ]; then
  scripts/build-c-lib.sh "$lib" >/dev/null
fi

gcc -std=c11 -Wall -Wextra -Werror -Iinclude "$work/layout.c" -o "$work/layout"
"$work/layout" >"$work/layout-c.txt"

mcs -nologo -unsafe -warnaserror+ -debug -out:"$work/tests.exe" -r:System.Core.dll \
  "$here/Voice.Native.g.cs" "$here/Voice.cs" "$here/tests/Tests.cs" "$work/Layout.g.cs"
# Mono resolves [DllImport("voice")] to libvoice.so on the library path.
LD_LIBRARY_PATH="$(cd "$lib" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  timeout 120 mono --debug "$work/tests.exe" "$work/layout-c.txt" "$tdir/release/relay" "$work" "$@"
