#!/usr/bin/env bash
# aarch64 cross build of the C++ core and its tests, run under qemu-user, so that the NEON and
# NEON+dotprod kernels (and the embedding table and profiles, with their atomics) are tested on
# an x86-64 machine.
#
# Needs: g++-aarch64-linux-gnu, qemu-user-static, googletest (sources in /usr/src/googletest;
# tests/cpp/CMakeLists.txt builds GoogleTest from them when cross-compiling).
#
# Runs the suites with QEMU_CPU=max (has dotprod: the neon+dotprod variant is chosen), then the
# kernel tests again with QEMU_CPU=cortex-a53 (Armv8.0, no dotprod: the plain neon variant is
# chosen; the dotprod kernel tests skip themselves there).
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir="${RECSERVE_AARCH64_BUILD_DIR:-build-aarch64}"
jobs="$(nproc 2>/dev/null || echo 4)"

for tool in aarch64-linux-gnu-g++ qemu-aarch64-static; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found (apt-get install g++-aarch64-linux-gnu qemu-user-static)" >&2; exit 1; }
done

echo "-- configure ${build_dir} (aarch64 cross)"
cmake -S . -B "$build_dir" -G Ninja \
  -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake \
  -DCMAKE_BUILD_TYPE=Release \
  -DRECSERVE_BUILD_TESTS=ON >/dev/null

echo "-- build test_base test_simd test_mlp test_embed test_profiles"
cmake --build "$build_dir" --target test_base test_simd test_mlp test_embed test_profiles -j "$jobs"

labels='^(test_base|test_simd|test_mlp|test_embed|test_profiles)$'
echo "-- build test_ann"
if cmake --build "$build_dir" --target test_ann -j "$jobs"; then
  labels='^(test_base|test_simd|test_mlp|test_embed|test_profiles|test_ann)$'
else
  echo "warning: test_ann does not build for aarch64; running the other suites only" >&2
fi

# Each suite is labelled with its binary's name (tests/cpp/CMakeLists.txt).
echo "-- ctest under qemu-aarch64, QEMU_CPU=max (neon+dotprod)"
QEMU_CPU=max ctest --test-dir "$build_dir" -L "$labels" --output-on-failure -j "$jobs"

# The kernel tests again on a CPU without dotprod; test_ann (minutes under qemu) only once.
echo "-- ctest under qemu-aarch64, QEMU_CPU=cortex-a53 (neon, no dotprod)"
QEMU_CPU=cortex-a53 ctest --test-dir "$build_dir" -L '^(test_base|test_simd|test_mlp)$' --output-on-failure -j "$jobs"
