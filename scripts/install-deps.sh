#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test the workspace:
# cmake (bundled libopus), libasound2-dev + pkg-config (cpal), the tools the C examples use:
# valgrind, clang (AddressSanitizer + UndefinedBehaviorSanitizer runs), libopus-dev (the test that
# links libvoice.a beside the system libopus) and binutils (ld -r / objcopy for that archive);
# python3 (the demo and example scripts), mono-devel (mcs + mono: the C# binding's tests,
# bindings/csharp/test.sh), redis-server (rooms across relays: relay/tests/cluster.rs and
# scripts/cluster-demo.sh start their own on a loopback port), xvfb + libxtst6 + libxi6 (the GUI's
# mouse push-to-talk test runs the keys thread against a real X server, buttons pressed through
# XTEST), dbus-daemon (the GUI's portal push-to-talk tests start a private bus and serve a fake
# GlobalShortcuts portal on it; Debian 12's minimal images have no D-Bus daemon), and a Rust
# toolchain (scripts/install-rust.sh).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(cmake pkg-config libasound2-dev gcc g++ valgrind python3 clang libopus-dev binutils mono-devel
  redis-server xvfb libxtst6 libxi6 dbus-daemon)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The sanitizer runtimes of the installed clang (a recommendation that --no-install-recommends skips;
# the package name carries clang's major version).
major=$(clang -dumpversion | cut -d. -f1)
if ! dpkg -s "libclang-rt-$major-dev" >/dev/null 2>&1; then
  $SUDO apt-get install -y -qq --no-install-recommends "libclang-rt-$major-dev" \
    || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "libclang-rt-$major-dev"; }
fi
"$(dirname "$0")/install-rust.sh"
