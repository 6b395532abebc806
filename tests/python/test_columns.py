"""recserve._columns: the checksummed column files of snapshots refuse any damage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recserve._columns import read_columns, string_columns, strings, write_columns
from recserve._core import CorruptFileError

MAGIC = b"RSTESTCO"


def _columns() -> dict[str, np.ndarray]:
    return {
        "keys": np.array([1, 2**64 - 2, 7], dtype=np.uint64),
        "flags": np.array([1, 0, 1], dtype=np.uint8),  # 3 bytes: the next column is padded
        "scores": np.array([0.5, -1.0], dtype=np.float64),
        "empty": np.zeros(0, dtype=np.int32),
        **string_columns("names", ["a", "", "média", "日本"]),
    }


def test_columns_come_back_as_written(tmp_path: Path) -> None:
    write_columns(tmp_path / "f.bin", MAGIC, 3, _columns())
    read = read_columns(tmp_path / "f.bin", MAGIC, 3)
    assert list(read) == list(_columns())
    for name, column in _columns().items():
        assert read[name].dtype == column.dtype
        assert read[name].tolist() == column.tolist()
    assert strings(read, "names") == ["a", "", "média", "日本"]


def test_every_flipped_byte_and_every_truncation_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    write_columns(path, MAGIC, 1, _columns())
    good = path.read_bytes()
    for at in range(len(good)):
        damaged = bytearray(good)
        damaged[at] ^= 0x80
        path.write_bytes(bytes(damaged))
        with pytest.raises(CorruptFileError):
            read_columns(path, MAGIC, 1)
    for size in range(0, len(good), 7):
        path.write_bytes(good[:size])
        with pytest.raises(CorruptFileError):
            read_columns(path, MAGIC, 1)


def test_another_kind_or_version_is_refused(tmp_path: Path) -> None:
    write_columns(tmp_path / "f.bin", MAGIC, 1, _columns())
    with pytest.raises(CorruptFileError, match="not a"):
        read_columns(tmp_path / "f.bin", b"RSOTHER1", 1)
    with pytest.raises(CorruptFileError, match="version 1"):
        read_columns(tmp_path / "f.bin", MAGIC, 2)


def test_strings_with_inconsistent_offsets_are_refused() -> None:
    columns = string_columns("names", ["ab", "c"])
    columns["names.offsets"] = np.array([0, 3, 2], dtype=np.uint64)
    with pytest.raises(CorruptFileError, match="offsets"):
        strings(columns, "names")
    with pytest.raises(CorruptFileError, match="missing"):
        strings({}, "names")
