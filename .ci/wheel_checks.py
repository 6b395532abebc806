"""Checks of a wheel build (.ci/wheels.sh): runtime ISA dispatch and frame pointers.

    python .ci/wheel_checks.py BUILD_DIR ARCH OBJDUMP

From BUILD_DIR/compile_commands.json: every translation unit is compiled with frame pointers;
no -march/-mcpu/-mtune and no ISA extension flag (-mavx2, -mfma, -mavx512*, ...) appears except
on the per-ISA kernel files that cpp/CMakeLists.txt lists (and those do carry theirs); nothing
is compiled for `native`. Then the objects themselves, disassembled with OBJDUMP: outside the
kernel files no VEX/EVEX vector instruction (AVX, AVX2, AVX-512) on x86-64 and no dot-product
or SVE instruction on aarch64, so code that runs before or without the dispatch runs on the
baseline CPU (x86-64, Armv8.0-A). The kernel files must contain theirs: the check can fail.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

# The per-ISA translation units (cpp/CMakeLists.txt) and an instruction each must contain.
KERNELS = {
    "x86_64": {
        "src/simd/kernels_avx2.cpp": r"%ymm",
        "src/simd/gemm_avx2.cpp": r"%ymm",
        "src/simd/kernels_avx512.cpp": r"%zmm",
        "src/simd/kernels_avx512vnni.cpp": r"\bvpdpbusd",
        "src/simd/gemm_avx512vnni.cpp": r"\bvpdpbusd",
    },
    "aarch64": {
        "src/simd/kernels_neon_dotprod.cpp": r"\b[su]dot\b",
        "src/simd/gemm_neon_dotprod.cpp": r"\b[su]dot\b",
    },
}
# Instructions beyond the baseline, in objdump's AT&T (x86) or GNU (Arm) syntax.
BEYOND_BASELINE = {
    "x86_64": re.compile(r"^\s*[0-9a-f]+:\s+v[a-z0-9]+\s.*%[xyz]mm|%zmm|%ymm|\{%k[0-7]\}", re.M),
    "aarch64": re.compile(r"^\s*[0-9a-f]+:\s+(?:[su]dot|usdot)\s|\bz[0-9]+\.[bhsdq]\b", re.M),
}
ISA_FLAG = re.compile(
    r"^-m(?:arch|cpu|tune)=|^-m(?:avx|fma|sse3|ssse3|sse4|bmi|f16c|popcnt|lzcnt|movbe|vnni|amx)"
)


def main(build_dir: Path, arch: str, objdump: str) -> int:
    entries = json.loads((build_dir / "compile_commands.json").read_text())
    kernels = KERNELS[arch]
    errors: list[str] = []
    seen_kernels: set[str] = set()
    checked = 0
    for entry in entries:
        args = entry.get("arguments") or shlex.split(entry["command"])
        src = Path(entry["file"])
        rel = next((k for k in kernels if src.as_posix().endswith("cpp/" + k)), None)
        isa = [a for a in args if ISA_FLAG.match(a)]
        if any("native" in a for a in isa):
            errors.append(f"{src}: {isa} (native)")
        if rel is None and isa:
            errors.append(f"{src}: ISA flags {isa} outside the per-ISA kernel files")
        if rel is not None:
            seen_kernels.add(rel)
            if not isa:
                errors.append(f"{src}: a kernel file without its ISA flags")
        if "-fno-omit-frame-pointer" not in args:
            errors.append(f"{src}: no -fno-omit-frame-pointer")

        out = entry.get("output") or args[args.index("-o") + 1]  # "output": CMake 3.20+ only
        obj = Path(entry["directory"]) / out
        asm = subprocess.run(
            [objdump, "-d", "--no-show-raw-insn", str(obj)],
            check=True, capture_output=True, text=True,
        ).stdout
        if rel is None:
            hit = BEYOND_BASELINE[arch].search(asm)
            if hit:
                errors.append(f"{obj.name}: beyond-baseline instruction: {hit.group(0).strip()}")
        elif not re.search(kernels[rel], asm):
            errors.append(f"{obj.name}: no {kernels[rel]!r}: the kernel was not built for its ISA")
        checked += 1
    missing = set(kernels) - seen_kernels
    if missing:
        errors.append(f"kernel files not compiled: {sorted(missing)}")
    for e in errors:
        print("error:", e, file=sys.stderr)
    print(
        f"   ISA check ({arch}): {checked} objects; {len(seen_kernels)} per-ISA kernel files carry "
        f"their flags and instructions, the other {checked - len(seen_kernels)} none beyond "
        f"the baseline; frame pointers everywhere: {'FAILED' if errors else 'ok'}"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
