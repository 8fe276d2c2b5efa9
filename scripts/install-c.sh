#!/usr/bin/env bash
# Installs the C library under PREFIX, the way cargo-c lays out rustls-ffi:
#   PREFIX/lib/libvoice.so.X.Y.Z (SONAME libvoice.so.X) + libvoice.so.X + libvoice.so symlinks
#   PREFIX/lib/libvoice.a                    (exports only voice_*; scripts/build-c-lib.sh)
#   PREFIX/lib/debug/libvoice.so.X.Y.Z.debug (the libraries are installed stripped; this is the
#                                             shared library's debug information, debuglinked)
#   PREFIX/include/voice.h                   (VOICE_VERSION_MAJOR/MINOR/PATCH, VOICE_ABI_VERSION)
#   PREFIX/lib/pkgconfig/voice.pc            (pkg-config --cflags --libs voice; --static adds the
#                                             system libraries the static library needs)
#   PREFIX/lib/cmake/Voice/VoiceConfig.cmake (+ VoiceConfigVersion.cmake): find_package(Voice)
#                                             gives the targets Voice::voice (shared) and
#                                             Voice::voice_static
# --no-devices installs the build without sound-card support (no libasound; see build-c-lib.sh).
#   scripts/install-c.sh [--no-devices] PREFIX
set -euo pipefail
devices=()
private_libs="-lasound -lpthread -ldl -lm -lgcc_s"
if [ "${1:-}" = --no-devices ]; then
  devices=(--no-devices)
  private_libs="-lpthread -ldl -lm -lgcc_s"
  shift
fi
[ $# -eq 1 ] || { echo "usage: $0 [--no-devices] PREFIX" >&2; exit 2; }
cd "$(dirname "$0")/.."
prefix=$(mkdir -p "$1" && cd "$1" && pwd)
tdir=${CARGO_TARGET_DIR:-target}
build=$tdir/c${devices:+-nodevices}
scripts/build-c-lib.sh "${devices[@]}" "$build"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
major=${version%%.*}
# The header's version macros must be the crate's (voice_ffi checks the same at compile time).
for part in MAJOR MINOR PATCH; do
  grep -q "#define VOICE_VERSION_$part " include/voice.h || { echo "voice.h lacks VOICE_VERSION_$part" >&2; exit 1; }
done

install -d "$prefix/lib/pkgconfig" "$prefix/lib/cmake/Voice" "$prefix/include" "$prefix/lib/debug"
install -m 0644 include/voice.h "$prefix/include/voice.h"
# Stripped libraries; the debug information goes beside them in lib/debug (the shared library
# names it with a GNU debuglink, as Debian's -dbgsym packages do).
so=libvoice.so.$version
objcopy --only-keep-debug "$build/$so" "$prefix/lib/debug/$so.debug"
objcopy --strip-debug --strip-unneeded --add-gnu-debuglink="$prefix/lib/debug/$so.debug" \
  "$build/$so" "$prefix/lib/$so"
chmod 0755 "$prefix/lib/$so"
objcopy --strip-debug "$build/libvoice.a" "$prefix/lib/libvoice.a"
chmod 0644 "$prefix/lib/libvoice.a" "$prefix/lib/debug/$so.debug"
ln -sf "libvoice.so.$version" "$prefix/lib/libvoice.so.$major"
ln -sf "libvoice.so.$major" "$prefix/lib/libvoice.so"

cat >"$prefix/lib/pkgconfig/voice.pc" <<EOF
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: voice
Description: Real-time voice engine: C API (client and sans-IO streams)
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lvoice
Libs.private: $private_libs
EOF

cat >"$prefix/lib/cmake/Voice/VoiceConfig.cmake" <<'EOF'
# find_package(Voice) — imported targets Voice::voice (shared) and Voice::voice_static.
get_filename_component(_voice_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET Voice::voice)
  add_library(Voice::voice SHARED IMPORTED)
  set_target_properties(Voice::voice PROPERTIES
    IMPORTED_LOCATION "${_voice_prefix}/lib/libvoice.so.@VERSION@"
    IMPORTED_SONAME "libvoice.so.@MAJOR@"
    INTERFACE_INCLUDE_DIRECTORIES "${_voice_prefix}/include")
endif()
if(NOT TARGET Voice::voice_static)
  find_package(Threads REQUIRED)
  add_library(Voice::voice_static STATIC IMPORTED)
  set_target_properties(Voice::voice_static PROPERTIES
    IMPORTED_LOCATION "${_voice_prefix}/lib/libvoice.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_voice_prefix}/include"
    INTERFACE_LINK_LIBRARIES "@ASOUND@Threads::Threads;${CMAKE_DL_LIBS};m;gcc_s")
endif()
set(Voice_VERSION "@VERSION@")
set(Voice_INCLUDE_DIRS "${_voice_prefix}/include")
set(Voice_LIBRARIES Voice::voice)
unset(_voice_prefix)
EOF
asound="asound;"
[ ${#devices[@]} -eq 0 ] || asound=""
sed -i "s/@VERSION@/$version/g; s/@MAJOR@/$major/g; s/@ASOUND@/$asound/" "$prefix/lib/cmake/Voice/VoiceConfig.cmake"

cat >"$prefix/lib/cmake/Voice/VoiceConfigVersion.cmake" <<EOF
# Same major version = compatible (the SONAME changes with the major version).
set(PACKAGE_VERSION "$version")
if(PACKAGE_FIND_VERSION_MAJOR STREQUAL "$major" AND NOT PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
else()
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
endif()
EOF
size() { stat -c %s "$1"; }
echo "installed voice $version into $prefix"
printf '  %-28s %10s bytes (unstripped %s)\n' "lib/$so" "$(size "$prefix/lib/$so")" "$(size "$build/$so")" \
  "lib/libvoice.a" "$(size "$prefix/lib/libvoice.a")" "$(size "$build/libvoice.a")"
printf '  %-28s %10s bytes\n' "lib/debug/$so.debug" "$(size "$prefix/lib/debug/$so.debug")"
