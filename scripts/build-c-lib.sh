#!/usr/bin/env bash
# Builds the C libraries a game links, exporting only the C API (voice_*):
#   $OUT/libvoice.a               static: one relocatable object whose only global symbols are
#                                 voice_* (Rust std, the bundled libopus, cpal, ... are local, so
#                                 a game that links its own libopus gets no duplicate definitions
#                                 and its opus_* calls reach its own libopus)
#   $OUT/libvoice.so.X.Y.Z        shared, SONAME libvoice.so.X, linked from that same object with
#                                 a version script that exports voice_* only
# OUT defaults to ${CARGO_TARGET_DIR:-target}/c. How: `ld -r` partially links the whole Rust
# staticlib into one object (so internal references resolve inside it), then
# `objcopy --keep-global-symbols` makes every defined symbol but voice_* local.
# --no-devices builds without sound-card support (voice_ffi's `devices` feature): for games that
# own their audio; that library does not need libasound at load time.
#   scripts/build-c-lib.sh [--no-devices] [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
features=()
system_libs=(-lasound -lpthread -ldl -lm -lgcc_s)
if [ "${1:-}" = --no-devices ]; then
  features=(--no-default-features)
  system_libs=(-lpthread -ldl -lm -lgcc_s)
  shift
fi
tdir=${CARGO_TARGET_DIR:-target}
out=${1:-$tdir/c}
mkdir -p "$out"
cargo build --release -p voice_ffi "${features[@]}"
rust_a=$tdir/release/libvoice_ffi.a
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
major=${version%%.*}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The exported names, from the header (every function the C API declares).
grep -oE '\bvoice_[a-z0-9_]+\(' include/voice.h | tr -d '(' | sort -u >"$work/exports.txt"
[ -s "$work/exports.txt" ] || { echo "no voice_* functions found in include/voice.h" >&2; exit 1; }

ld -r --whole-archive "$rust_a" -o "$work/voice.o"
# Rust objects embed LLVM bitcode (.llvmbc) that the system linker plugins would try, and fail,
# to read; the code is already compiled, so the bitcode and the address-significance tables go.
objcopy --keep-global-symbols="$work/exports.txt" --remove-section=.llvmbc \
  --remove-section=.llvmcmd --remove-section=.llvm_addrsig "$work/voice.o" "$work/voice_local.o"
rm -f "$out/libvoice.a"
ar rcs "$out/libvoice.a" "$work/voice_local.o"

{
  echo "VOICE_$major {"
  echo "  global:"
  sed 's/.*/    &;/' "$work/exports.txt"
  echo "  local: *;"
  echo "};"
} >"$work/voice.map"
cc -shared -o "$out/libvoice.so.$version" "$work/voice_local.o" \
  -Wl,-soname,"libvoice.so.$major" -Wl,--version-script="$work/voice.map" -Wl,--gc-sections \
  -Wl,-z,noexecstack -Wl,--as-needed "${system_libs[@]}"
ln -sf "libvoice.so.$version" "$out/libvoice.so.$major"
ln -sf "libvoice.so.$major" "$out/libvoice.so"

# Check what was promised: no global definition but voice_*.
leaked=$(nm -g --defined-only "$out/libvoice.a" 2>/dev/null | awk 'NF==3 {print $3}' | grep -v '^voice_' || true)
if [ -n "$leaked" ]; then
  echo "libvoice.a exports symbols outside voice_*:" >&2
  echo "$leaked" | head -20 >&2
  exit 1
fi
leaked=$(nm -D --defined-only "$out/libvoice.so.$version" | awk 'NF==3 {print $3}' | grep -v '^voice_' | grep -v '^VOICE_' || true)
if [ -n "$leaked" ]; then
  echo "libvoice.so exports symbols outside voice_*:" >&2
  echo "$leaked" | head -20 >&2
  exit 1
fi
echo "built $out/libvoice.a and $out/libvoice.so.$version (SONAME libvoice.so.$major), $(wc -l <"$work/exports.txt") voice_* symbols exported"
