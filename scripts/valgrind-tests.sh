#!/usr/bin/env bash
# Runs Rust integration tests under valgrind (memcheck; any error or definite leak fails, and for
# the C ABI's tests a possible leak too):
# the voice_core behaviour tests (jitter buffer, codec FEC/PLC, engine), the relay's socket tests
# for fan-out and hostile input, and the FFI misuse and defect tests. Long simulations (10-minute drift,
# the quality profiles) are left out: under valgrind they would take most of an hour.
set -euo pipefail
cd "$(dirname "$0")/.."
# "package test-binary modules": the integration tests of a crate are modules of one test binary
# (tests/it/main.rs); the listed modules' tests run in one valgrind process per crate. The
# processes run `nproc` at a time (valgrind runs all of a process's threads on one core), longest
# first (voice_ffi ~40 s, voice_core ~16 s, relay ~3 s), each one's output printed when all are done.
tests=(
  "voice_ffi it misuse defects"
  "voice_core it watermark reorder late_packets fec_and_plc wraparound talk_spurts loss_window flood engine"
  "relay it fanout bad_udp"
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
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pids=()
for i in "${!tests[@]}"; do
  entry=${tests[$i]}
  read -r pkg test mods <<<"$entry"
  exe=$(awk -v p="$pkg" -v t="$test" '$1 == p && $2 == t { print $3 }' <<<"$exes" | tail -1)
  [ -n "$exe" ] || { echo "valgrind-tests: no test executable for $pkg/$test" >&2; exit 1; }
  # The full names of the modules' tests (`MODULE::…`), passed with --exact: a plain filter is a
  # substring match (`engine::` would also pick `e2ee_engine::…`).
  names=()
  for m in $mods; do
    found=$("$exe" --list --format terse | sed -n "s/^\($m::.*\): test\$/\1/p")
    [ -n "$found" ] || { echo "valgrind-tests: no tests in $pkg/$test $m" >&2; exit 1; }
    mapfile -t -O "${#names[@]}" names <<<"$found"
  done
  echo "valgrind: $pkg/$test ($mods: ${#names[@]} tests)" >"$work/$i.out"
  cmd=("${vg[@]}")
  # The C ABI is held to the C examples' bar: a "possibly lost" block fails too (the libtest
  # harness's own one is suppressed by scripts/valgrind-rust-tests.supp).
  [ "$pkg" != voice_ffi ] || cmd=("${vg_ffi[@]}")
  while [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; do wait -n || true; done
  "${cmd[@]}" "$exe" --test-threads=2 -q --exact "${names[@]}" >>"$work/$i.out" 2>&1 &
  pids+=($!)
done
failed=()
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=("${tests[$i]%% *}")
  cat "$work/$i.out"
done
[ ${#failed[@]} -eq 0 ] || { echo "valgrind tests failed: ${failed[*]}"; exit 1; }
echo "valgrind tests: ok"
