#!/usr/bin/env bash
# Runs Rust integration tests under valgrind (memcheck; any error or definite leak fails, and for
# the C ABI's tests a possible leak too):
# the voice_core behaviour tests (jitter buffer, codec FEC/PLC, engine), the relay's socket tests
# for fan-out and hostile input, and the FFI misuse and defect tests. Long simulations (10-minute drift,
# the quality profiles) are left out: under valgrind they would take most of an hour.
set -euo pipefail
cd "$(dirname "$0")/.."
tests=(
  "voice_core watermark" "voice_core reorder" "voice_core late_packets" "voice_core fec_and_plc"
  "voice_core wraparound" "voice_core talk_spurts" "voice_core loss_window" "voice_core flood"
  "voice_core engine" "relay fanout" "relay bad_udp" "voice_ffi misuse" "voice_ffi defects"
)
vg=(valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-possibly-lost=no
    --suppressions=examples/valgrind.supp)
vg_ffi=(valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,possible
    --show-possibly-lost=yes --suppressions=examples/valgrind.supp
    --suppressions=scripts/valgrind-rust-tests.supp)
# One build of every test executable, resolved exactly as the test suite's (no `-p`: selecting a
# package changes feature unification and would rebuild the workspace), listed as
# "package test executable".
exes=$(cargo test --release --no-run --message-format=json 2>/dev/null | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        # path+file:///…/DIR#NAME@VERSION, or path+file:///…/NAME#VERSION
        where, frag = m["package_id"].split("#")
        pkg = frag.split("@")[0] if "@" in frag else where.rstrip("/").split("/")[-1]
        print(pkg, m["target"]["name"], m["executable"])')
for entry in "${tests[@]}"; do
  read -r pkg test <<<"$entry"
  exe=$(awk -v p="$pkg" -v t="$test" '$1 == p && $2 == t { print $3 }' <<<"$exes" | tail -1)
  [ -n "$exe" ] || { echo "valgrind-tests: no test executable for $pkg/$test" >&2; exit 1; }
  echo "valgrind: $pkg/$test"
  if [ "$pkg" = voice_ffi ]; then
    # The C ABI is held to the C examples' bar: a "possibly lost" block fails too (the libtest
    # harness's own one is suppressed by scripts/valgrind-rust-tests.supp).
    "${vg_ffi[@]}" "$exe" --test-threads=2 -q
  else
    "${vg[@]}" "$exe" --test-threads=2 -q
  fi
done
echo "valgrind tests: ok"
