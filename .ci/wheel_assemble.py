"""Assemble a (not yet repaired) wheel from an unpacked sdist and a cross-built extension.

.ci/wheels.sh builds `recserve._core` with CMake for a target that the running interpreter is
not (another CPU, another CPython), which a PEP 517 backend cannot do; this script packs what
scikit-build-core would: the package directory `python/recserve` of the sdist, the extension
beside it, the sdist's PKG-INFO as METADATA, `[project.scripts]` as entry points. `wheel pack`
(PyPI's `wheel`) then writes RECORD and names the file; auditwheel repairs and retags it.

    python .ci/wheel_assemble.py SDIST_DIR CORE_SO TAG OUT_DIR
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from email.parser import Parser
from pathlib import Path


def main(sdist_dir: Path, core_so: Path, tag: str, out_dir: Path) -> Path:
    meta = Parser().parsestr((sdist_dir / "PKG-INFO").read_text(encoding="utf-8"))
    name, version = meta["Name"], meta["Version"]
    pyproject = tomllib.loads((sdist_dir / "pyproject.toml").read_text(encoding="utf-8"))
    package_dirs = pyproject["tool"]["scikit-build"]["wheel"]["packages"]

    stage = out_dir / f"{name}-{version}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for package_dir in package_dirs:
        src = sdist_dir / package_dir
        shutil.copytree(
            src, stage / src.name,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.o", "*.a"),
        )
    pkg = stage / Path(package_dirs[0]).name
    shutil.copy2(core_so, pkg / core_so.name)

    info = stage / f"{name}-{version}.dist-info"
    info.mkdir()
    shutil.copy2(sdist_dir / "PKG-INFO", info / "METADATA")
    (info / "WHEEL").write_text(
        "Wheel-Version: 1.0\n"
        "Generator: recserve .ci/wheels.sh\n"
        "Root-Is-Purelib: false\n"
        f"Tag: {tag}\n",
        encoding="utf-8",
    )
    scripts = pyproject["project"].get("scripts", {})
    if scripts:
        lines = ["[console_scripts]", *(f"{k} = {v}" for k, v in scripts.items())]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

    wheel = out_dir / f"{name.replace('-', '_')}-{version}-{tag}.whl"
    wheel.unlink(missing_ok=True)
    subprocess.run(
        [sys.executable, "-m", "wheel", "pack", str(stage), "--dest-dir", str(out_dir)],
        check=True, stdout=subprocess.DEVNULL,
    )
    if not wheel.is_file():
        sys.exit(f"wheel pack did not write {wheel}")
    shutil.rmtree(stage)
    return wheel


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    print(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])))
