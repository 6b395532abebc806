"""What the benchmarks say about the machine they ran on."""

from __future__ import annotations

import contextlib
import platform
import subprocess
from pathlib import Path

__all__ = ["cpu_model", "git_sha"]

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def git_sha() -> str:
    """The commit the benchmark ran on (short), "-dirty" if the code differs from it."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "diff", "--quiet", "HEAD", "--", "python", "cpp", "src"]
        ).returncode
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
