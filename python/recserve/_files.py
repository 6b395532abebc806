"""Durable file writes: a file replaced whole (temporary file, fsync, rename, directory fsync),
so a crash leaves the old contents or the new, never a mix."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_directory", "write_atomic"]


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    fsync_directory(path.parent)
