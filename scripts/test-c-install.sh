#!/usr/bin/env bash
# Installs the C library into a temporary prefix (scripts/install-c.sh) and builds against it the
# way an integrator would: one example with pkg-config, one with CMake find_package(Voice), and
# one linking the static library beside Debian's libopus (whole archive, so every opus_* of both
# must coexist). Runs what it built. Used by examples/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
tdir=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
scripts/install-c.sh "$prefix"
# The installed layout.
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
major=${version%%.*}
for f in "lib/libvoice.so.$version" "lib/libvoice.so.$major" lib/libvoice.so lib/libvoice.a \
  include/voice.h lib/pkgconfig/voice.pc lib/cmake/Voice/VoiceConfig.cmake; do
  [ -e "$prefix/$f" ] || { echo "missing $f" >&2; exit 1; }
done
readelf -d "$prefix/lib/libvoice.so.$version" | grep -q "SONAME.*\[libvoice.so.$major\]" \
  || { echo "wrong SONAME" >&2; exit 1; }

# Stripped, with the debug information beside it and linked by name.
readelf -S "$prefix/lib/libvoice.so.$version" >"$work/sections.txt"
grep -q "\.debug_info" "$work/sections.txt" && { echo "libvoice.so is not stripped" >&2; exit 1; }
grep -q "\.gnu_debuglink" "$work/sections.txt" || { echo "libvoice.so has no debuglink" >&2; exit 1; }
readelf -S "$prefix/lib/debug/libvoice.so.$version.debug" | grep -q "\.debug_info" \
  || { echo "the .debug file holds no debug information" >&2; exit 1; }

# pkg-config, shared.
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
[ "$(pkg-config --modversion voice)" = "$version" ] || { echo "pkg-config version" >&2; exit 1; }
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror -pedantic examples/sansio_loopback.c \
  $(pkg-config --cflags --libs voice) -lm -Wl,-rpath,"$prefix/lib" -o "$work/pc_sansio"
"$work/pc_sansio" | tail -1
# pkg-config, static, beside Debian's libopus linked as a whole archive: no duplicate symbols.
opus_a=$(pkg-config --variable=libdir opus 2>/dev/null || echo /usr/lib/x86_64-linux-gnu)/libopus.a
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror -pedantic examples/system_opus.c $(pkg-config --cflags voice) \
  "$prefix/lib/libvoice.a" -Wl,--whole-archive "$opus_a" -Wl,--no-whole-archive \
  $(pkg-config --static --libs-only-l voice | sed 's/-lvoice//') -o "$work/static_opus"
"$work/static_opus"
nm "$work/static_opus" >"$work/syms.txt"
grep -q " T opus_encode$" "$work/syms.txt" || { echo "the game's opus_encode is not global" >&2; exit 1; }

# CMake find_package(Voice).
cmake -S examples/cmake -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/cmake" >/dev/null
LD_LIBRARY_PATH=$prefix/lib "$work/cmake/sansio_loopback" | tail -1
"$work/cmake/system_opus_static"

# Without sound-card support (for games that own their audio): the library never loads libasound,
# and the sans-IO example runs against it.
scripts/install-c.sh --no-devices "$work/nodev" >/dev/null
if ldd "$work/nodev/lib/libvoice.so.$version" | grep -q libasound; then
  echo "the --no-devices library still needs libasound" >&2; exit 1
fi
ldd "$prefix/lib/libvoice.so.$version" | grep -q libasound \
  || { echo "the default library lost device support (no libasound)" >&2; exit 1; }
# shellcheck disable=SC2046
PKG_CONFIG_PATH=$work/nodev/lib/pkgconfig cc -std=c11 -Wall -Wextra -Werror -pedantic \
  examples/sansio_loopback.c $(PKG_CONFIG_PATH=$work/nodev/lib/pkgconfig pkg-config --cflags --libs voice) \
  -lm -Wl,-rpath,"$work/nodev/lib" -o "$work/nodev_sansio"
"$work/nodev_sansio" | tail -1
# Artefact sizes (stripped; the debug information is installed separately).
for p in "$prefix" "$work/nodev"; do
  printf "%-10s libvoice.so %6d KiB   libvoice.a %6d KiB   debug %6d KiB\n" \
    "$([ "$p" = "$prefix" ] && echo devices || echo no-devices)" \
    $(($(stat -c %s "$p/lib/libvoice.so.$version") / 1024)) $(($(stat -c %s "$p/lib/libvoice.a") / 1024)) \
    $(($(stat -c %s "$p/lib/debug/libvoice.so.$version.debug") / 1024))
done
echo "c install: ok"
