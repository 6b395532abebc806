#!/usr/bin/env bash
# The Python extension (recserve._core) cross-built for aarch64 and tested under qemu-user, so
# the bindings, not only the C++ suites (.ci/cross_aarch64.sh), are exercised on Arm.
#
# 1. An aarch64 CPython 3.11 with its headers: Debian's arm64 .debs, fetched with apt-get download
#    and unpacked with dpkg -x into <build>/sysroot (nothing is installed into the host's package
#    database; the host's python3.11 is untouched). Needs arm64 as a foreign dpkg architecture.
# 2. _core cross-compiled against that sysroot's headers (the toolchain file of
#    .ci/cross_aarch64.sh; pybind11 from a host venv in <build>/host-venv).
# 3. The Python dependencies as manylinux aarch64 wheels, pip install --target on the host
#    (pip never runs under qemu).
# 4. python/recserve plus the aarch64 _core in <build>/pkg.
# 5. pytest under qemu-aarch64-static with the sysroot's python3.11: see "tests" below.
#
# Not a wheel: Debian bookworm's cross toolchain targets glibc 2.36, so the .so has no manylinux
# tag. Build dir: RECSERVE_AARCH64_PY_BUILD_DIR (default build/aarch64-python); reruns reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

build_dir="${RECSERVE_AARCH64_PY_BUILD_DIR:-build/aarch64-python}"
mkdir -p "$build_dir"
build_dir="$(cd "$build_dir" && pwd)"
jobs="$(nproc 2>/dev/null || echo 4)"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

for tool in aarch64-linux-gnu-g++ aarch64-linux-gnu-readelf qemu-aarch64-static cmake ninja python3 dpkg apt-get; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found (see .ci/run's system packages)" >&2; exit 1; }
done

start=$SECONDS
step_start=$SECONDS
took() { echo "   ($(( SECONDS - step_start )) s)"; step_start=$SECONDS; }

# ---------------------------------------------------------------------------------------------
# 1. aarch64 CPython 3.11 sysroot. Runtime closure of python3.11 (apt-cache depends --recurse,
# without the -dev packages' own dependencies: only Python's headers are compiled against; the
# C++ runtime and libc headers come from the cross toolchain). No libmpdec: Debian's 3.11 bundles it.
debs=(
  python3.11 python3.11-minimal libpython3.11 libpython3.11-minimal libpython3.11-stdlib
  libpython3.11-dev
  libc6 libgcc-s1 libstdc++6 libcrypt1 zlib1g libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5
  libsqlite3-0 libuuid1 libncursesw6 libtinfo6 libreadline8 libdb5.3 libnsl2 libtirpc3
  libgssapi-krb5-2 libk5crypto3 libkrb5-3 libkrb5support0 libkeyutils1 libcom-err2
)
debs_all=(media-types)  # Architecture: all (mime.types for mimetypes)

echo "-- aarch64 CPython sysroot: ${build_dir}/sysroot"
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -qq
elif ! apt-cache show python3.11-minimal:arm64 >/dev/null 2>&1; then
  $SUDO apt-get update -qq
fi

pkgs=("${debs[@]/%/:arm64}" "${debs_all[@]}")
deb_dir="$build_dir/debs"
sysroot="$build_dir/sysroot"
mkdir -p "$deb_dir"
# The file names of the candidate versions (--print-uris lists only what is not downloaded yet,
# so ask from an empty directory).
tmp="$(mktemp -d)"
wanted="$(cd "$tmp" && apt-get download --print-uris "${pkgs[@]}" | awk '{print $2}' | sort)"
rmdir "$tmp"
[ "$(wc -l <<<"$wanted")" -eq "${#pkgs[@]}" ] || { echo "error: apt-get download --print-uris: expected ${#pkgs[@]} packages, got: $wanted" >&2; exit 1; }
for f in "$deb_dir"/*.deb; do  # older versions
  if [ -e "$f" ] && ! grep -qxF "$(basename "$f")" <<<"$wanted"; then rm -f "$f"; fi
done
(cd "$deb_dir" && apt-get download -q -o APT::Sandbox::User=root "${pkgs[@]}" >/dev/null)

if [ "$(cat "$sysroot/.debs" 2>/dev/null)" != "$wanted" ]; then
  rm -rf "$sysroot"
  mkdir -p "$sysroot"
  while read -r f; do dpkg -x "$deb_dir/$f" "$sysroot"; done <<<"$wanted"
  # Absolute symlinks (e.g. sitecustomize.py -> /etc/python3.11/...) would resolve on the host.
  find "$sysroot" -type l -lname '/*' -print0 | while IFS= read -r -d '' link; do
    ln -sfn "$sysroot$(readlink "$link")" "$link"
  done
  echo "$wanted" >"$sysroot/.debs"
fi
py_a64=("qemu-aarch64-static" "-L" "$sysroot" "$sysroot/usr/bin/python3.11")
"${py_a64[@]}" -c 'import platform, sys; print("  ", sys.version.split()[0], platform.machine())'
took

# ---------------------------------------------------------------------------------------------
# 2. _core for aarch64. FindPython gets the host interpreter (3.11, for the version check only)
# and the sysroot's headers; pybind11 is told the suffix instead of asking that interpreter.
# Debian's python3.11/pyconfig.h includes <aarch64-linux-gnu/python3.11/pyconfig.h>, hence the
# -isystem of the sysroot's /usr/include (which holds only Python's headers).
echo "-- host venv with pybind11 (headers and CMake config)"
host_venv="$build_dir/host-venv"
[ -x "$host_venv/bin/python" ] || python3 -m venv "$host_venv"
"$host_venv/bin/python" -c 'import pybind11' 2>/dev/null \
  || "$host_venv/bin/pip" install -q --disable-pip-version-check 'pybind11>=2.13'
pybind11_dir="$("$host_venv/bin/python" -c 'import pybind11; print(pybind11.get_cmake_dir())')"
took

ext_suffix=".cpython-311-aarch64-linux-gnu.so"
echo "-- configure and build _core${ext_suffix} (aarch64 cross)"
cmake -S . -B "$build_dir/cmake" -G Ninja --no-warn-unused-cli \
  -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake \
  -DCMAKE_BUILD_TYPE=Release \
  -DSKBUILD=ON \
  -DRECSERVE_BUILD_TESTS=OFF \
  -DCMAKE_CXX_FLAGS="-isystem $sysroot/usr/include" \
  -DPython_EXECUTABLE="$host_venv/bin/python" \
  -DPython_INCLUDE_DIR="$sysroot/usr/include/python3.11" \
  -Dpybind11_DIR="$pybind11_dir" \
  -DPYBIND11_USE_CROSSCOMPILING=ON \
  -DPYTHON_IS_DEBUG=OFF \
  -DPYTHON_MODULE_DEBUG_POSTFIX= \
  -DPYTHON_MODULE_EXTENSION="$ext_suffix" >/dev/null
cmake --build "$build_dir/cmake" --target _core -j "$jobs"
so="$build_dir/cmake/src/_core$ext_suffix"
aarch64-linux-gnu-readelf -h "$so" | grep -q 'Machine:.*AArch64' || { echo "error: $so is not an aarch64 object" >&2; exit 1; }
took

# ---------------------------------------------------------------------------------------------
# 3. Dependencies: pyproject's [project] dependencies, and what the tests below import (conftest
# imports boto3 for its AWS fixtures; pyproject's addopts need pytest-benchmark).
requirements=(
  numpy fastapi pydantic pydantic-settings uvicorn prometheus-client
  pytest hypothesis httpx pytest-benchmark boto3
)
deps="$build_dir/deps"
echo "-- aarch64 wheels into ${deps}"
if [ "$(cat "$deps/.requirements" 2>/dev/null)" != "${requirements[*]}" ]; then
  rm -rf "$deps"
  "$host_venv/bin/pip" install -q --disable-pip-version-check --target "$deps" \
    --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 \
    --platform manylinux_2_28_aarch64 --only-binary=:all: \
    --python-version 3.11 --implementation cp "${requirements[@]}"
  echo "${requirements[*]}" >"$deps/.requirements"
fi
took

# ---------------------------------------------------------------------------------------------
# 4. The package: the sources plus the aarch64 extension.
pkg="$build_dir/pkg"
rm -rf "$pkg"
mkdir -p "$pkg"
cp -r python/recserve "$pkg/"
find "$pkg" \( -name '__pycache__' -o -name '_core*.so' \) -prune -exec rm -rf {} +
cp "$so" "$pkg/recserve/"

# ---------------------------------------------------------------------------------------------
# 5. Under qemu. Bytecode and hypothesis's database stay in the build dir.
export PYTHONPATH="$pkg:$deps"
export PYTHONPYCACHEPREFIX="$build_dir/pycache"
export HYPOTHESIS_STORAGE_DIRECTORY="$build_dir/hypothesis"
for cpu in max cortex-a53; do
  echo "-- QEMU_CPU=$cpu: recserve.simd.active_variant()"
  QEMU_CPU=$cpu "${py_a64[@]}" -c \
    'import platform, recserve; from recserve import simd; print("  ", platform.machine(), simd.active_variant())'
done
took

# The core bindings, and a feed end to end in process (native pipeline against the Python
# reference, and the FastAPI app). Left out: the 10000-page agreement test (~10 min under qemu)
# and the tests that start a child interpreter (sys.executable is an aarch64 binary the host
# cannot exec without binfmt_misc).
tests=(
  tests/python/test_ann.py tests/python/test_mlp.py tests/python/test_embed.py
  tests/python/test_profiles.py tests/python/test_simd.py tests/python/test_feed.py
  tests/python/feed/test_builder.py tests/python/service/test_app.py
)
deselect=(
  --deselect tests/python/feed/test_builder.py::test_native_and_reference_pipelines_agree_on_10000_seeded_pages
  --deselect tests/python/test_simd.py::test_recserve_isa_selects_the_scalar_kernels
  --deselect tests/python/test_simd.py::test_unknown_recserve_isa_is_an_error_not_a_fallback
)
echo "-- pytest under qemu-aarch64, QEMU_CPU=max (neon+dotprod)"
QEMU_CPU=max "${py_a64[@]}" -m pytest -p no:cacheprovider -q --durations=5 "${tests[@]}" "${deselect[@]}"
took

echo "-- pytest under qemu-aarch64, QEMU_CPU=cortex-a53 (neon, no dotprod): kernels and MLP"
QEMU_CPU=cortex-a53 "${py_a64[@]}" -m pytest -p no:cacheprovider -q --durations=3 \
  tests/python/test_simd.py tests/python/test_mlp.py "${deselect[@]}"
took

echo "-- aarch64 Python: done in $(( SECONDS - start )) s"
