"""What the benchmarks say about the machine they ran on."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path

__all__ = ["cpu_model"]


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
