#!/usr/bin/env bash
# The aarch64 manylinux wheel, tested under qemu-user, so the bindings, not only the C++ suites
# (.ci/cross_aarch64.sh), are exercised on Arm, as the wheel that ships.
#
# 1. An aarch64 CPython 3.11: Debian's arm64 .debs, fetched with apt-get download and unpacked
#    with dpkg -x into <build>/sysroot (nothing is installed into the host's package database;
#    the host's python3.11 is untouched). Needs arm64 as a foreign dpkg architecture.
# 2. The cp311 aarch64 wheel, built by `.ci/wheels.sh --arch aarch64 --python 3.11` (zig c++
#    pinned to glibc 2.28, the ISA-dispatch and auditwheel checks) into <build>/dist.
# 3. The Python dependencies as manylinux aarch64 wheels, pip install --target on the host
#    (pip never runs under qemu).
# 4. The wheel itself, pip install --target <build>/pkg --platform manylinux_2_28_aarch64 on the
#    host: pip checks that its tags suit such a machine.
# 5. pytest under qemu-aarch64-static with the sysroot's python3.11, importing the installed
#    wheel: see "tests" below.
#
# Build dir: RECSERVE_AARCH64_PY_BUILD_DIR (default build/aarch64-python); .ci/wheels.sh's is
# build/wheels. Reruns reuse both.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir="${RECSERVE_AARCH64_PY_BUILD_DIR:-build/aarch64-python}"
mkdir -p "$build_dir"
build_dir="$(cd "$build_dir" && pwd)"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

for tool in aarch64-linux-gnu-objdump aarch64-linux-gnu-readelf qemu-aarch64-static cmake ninja python3 dpkg apt-get; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found (see .ci/run's system packages)" >&2; exit 1; }
done

start=$SECONDS
step_start=$SECONDS
took() { echo "   ($(( SECONDS - step_start )) s)"; step_start=$SECONDS; }

# ---------------------------------------------------------------------------------------------
# 1. aarch64 CPython 3.11 sysroot. Runtime closure of python3.11 (apt-cache depends --recurse).
# No libmpdec: Debian's 3.11 bundles it.
debs=(
  python3.11 python3.11-minimal libpython3.11 libpython3.11-minimal libpython3.11-stdlib
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
# 2. The aarch64 cp311 manylinux wheel, by .ci/wheels.sh (zig c++ for aarch64-linux-gnu.2.28, the
# ISA and auditwheel checks): the wheel that `bash .ci/wheels.sh` ships.
echo "-- the aarch64 cp311 wheel: .ci/wheels.sh --arch aarch64 --python 3.11"
wheel_dist="$build_dir/dist"
rm -rf "$wheel_dist"
RECSERVE_DIST_DIR="$wheel_dist" bash .ci/wheels.sh --arch aarch64 --python 3.11
wheel="$(ls "$wheel_dist"/recserve-*-cp311-cp311-manylinux_*_aarch64.whl)"
echo "   $(basename "$wheel")"
step_start=$SECONDS

echo "-- host venv for pip --target"
host_venv="$build_dir/host-venv"
[ -x "$host_venv/bin/python" ] || python3 -m venv "$host_venv"
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
# 4. The wheel installed as pip would on a glibc 2.28 aarch64 machine (pip refuses a wheel whose
# tags such a machine does not accept; pip does not expand --platform to the older manylinux
# tags, so they are listed), on the host: pip never runs under qemu.
pkg="$build_dir/pkg"
rm -rf "$pkg"
platforms=(--platform manylinux2014_aarch64)
for m in $(seq 17 28); do platforms+=(--platform "manylinux_2_${m}_aarch64"); done
echo "-- pip install --target ${pkg} (manylinux_2_17..2_28 aarch64) $(basename "$wheel")"
"$host_venv/bin/pip" install -q --disable-pip-version-check --target "$pkg" --no-deps \
  "${platforms[@]}" --only-binary=:all: --python-version 3.11 --implementation cp "$wheel"
so="$(ls "$pkg"/recserve/_core.cpython-311-aarch64-linux-gnu.so)"
aarch64-linux-gnu-readelf -h "$so" | grep -q 'Machine:.*AArch64' || { echo "error: $so is not an aarch64 object" >&2; exit 1; }
took

# ---------------------------------------------------------------------------------------------
# 5. Under qemu. Bytecode and hypothesis's database stay in the build dir.
export PYTHONPATH="$pkg:$deps"
export PYTHONPYCACHEPREFIX="$build_dir/pycache"
export HYPOTHESIS_STORAGE_DIRECTORY="$build_dir/hypothesis"
for cpu in max cortex-a53; do
  echo "-- QEMU_CPU=$cpu: recserve.simd.active_variant()"
  QEMU_CPU=$cpu "${py_a64[@]}" -c \
    'import platform, recserve; from recserve import simd; print("  ", platform.machine(), simd.active_variant(), recserve.__file__)'
done
# The tests import the installed wheel, not python/recserve.
"${py_a64[@]}" -c 'import recserve, sys; sys.exit(not recserve.__file__.startswith(sys.argv[1]))' "$pkg/" \
  || { echo "error: recserve is not imported from the installed wheel in $pkg" >&2; exit 1; }
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
