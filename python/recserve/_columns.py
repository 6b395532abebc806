"""A checksummed file of named columns (numpy arrays): what a snapshot's catalogue and
amplification files are made of, read back in one pass without a parser.

    offset  size  field
         0     8  magic: the kind of file (e.g. b"RSCATLG1")
         8     4  format version of that kind
        12     4  number of columns
        16     8  body bytes
        24     4  CRC-32C of the body
        28     4  CRC-32C of bytes 0..27
        32     …  the body: one 48-byte directory entry per column (name: 24 bytes ASCII,
                  NUL-padded; dtype: 8 bytes ASCII, numpy's string such as "<u8"; elements:
                  u64; offset from the body's start: u64), then the columns' bytes, each
                  starting 8-byte aligned.

All integers little-endian. A list of strings travels as two columns, ``<name>.offsets`` (uint64,
n + 1 byte offsets) and ``<name>.utf8`` (the bytes): see ``string_columns``/``strings``.
Columns read back are read-only views of the file's bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from recserve import _core
from recserve._core import CorruptFileError
from recserve._files import write_atomic

__all__ = ["read_columns", "string_columns", "strings", "write_columns"]

_HEADER = struct.Struct("<8sIIQI")  # magic, version, columns, body bytes, body CRC
_HEADER_BYTES = _HEADER.size + 4  # + the header's own CRC
_ENTRY = struct.Struct("<24s8sQQ")  # name, dtype, elements, offset
_DTYPES = frozenset(("|u1", "|b1", "|i1", "<u2", "<u4", "<u8", "<i2", "<i4", "<i8", "<f4", "<f8"))
assert _HEADER_BYTES == 32
assert _ENTRY.size == 48


def _padding(size: int) -> int:
    return -size % 8


def write_columns(
    path: Path, magic: bytes, version: int, columns: Mapping[str, npt.NDArray[np.generic]]
) -> None:
    """Writes the columns (1-D arrays) whole: temporary file, fsync, rename."""
    if len(magic) != 8:
        raise ValueError(f"a magic is 8 bytes, got {magic!r}")
    arrays = []
    for name, column in columns.items():
        array = np.ascontiguousarray(column)
        if array.ndim != 1:
            raise ValueError(f"column {name!r} must be 1-D, got shape {array.shape}")
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == "=" else array.dtype
        if dtype.str not in _DTYPES:
            raise ValueError(f"column {name!r} has dtype {array.dtype}, not a plain number")
        if len(name.encode("ascii")) > 24:
            raise ValueError(f"column name {name!r} is longer than 24 bytes")
        arrays.append((name, dtype.str, array.astype(dtype, copy=False)))
    offset = _ENTRY.size * len(arrays)
    directory, data = [], []
    for name, dtype, array in arrays:
        directory.append(_ENTRY.pack(name.encode("ascii"), dtype.encode(), len(array), offset))
        data.append(array.tobytes())
        data.append(b"\0" * _padding(array.nbytes))
        offset += array.nbytes + _padding(array.nbytes)
    body = b"".join(directory + data)
    head = _HEADER.pack(magic, version, len(arrays), len(body), _core.crc32c(body))
    write_atomic(path, head + struct.pack("<I", _core.crc32c(head)) + body)


def read_columns(path: Path, magic: bytes, version: int) -> dict[str, npt.NDArray[np.generic]]:
    """The columns of a file ``write_columns`` wrote with this magic and version.
    CorruptFileError for anything else: damaged, truncated, another kind or version."""
    data = path.read_bytes()
    if len(data) < _HEADER_BYTES:
        raise CorruptFileError(f"{path.name} is truncated ({len(data)} bytes)")
    head = data[: _HEADER.size]
    (head_crc,) = struct.unpack_from("<I", data, _HEADER.size)
    if _core.crc32c(head) != head_crc:
        raise CorruptFileError(f"{path.name} has a damaged header (checksum)")
    found_magic, found_version, count, body_bytes, body_crc = _HEADER.unpack(head)
    if found_magic != magic:
        raise CorruptFileError(f"{path.name} is not a {magic!r} file (magic {found_magic!r})")
    if found_version != version:
        raise CorruptFileError(f"{path.name} has format version {found_version}, not {version}")
    body = memoryview(data)[_HEADER_BYTES:]
    if len(body) != body_bytes:
        raise CorruptFileError(
            f"{path.name} has {len(body)} body bytes, its header says {body_bytes}"
        )
    if _core.crc32c(body) != body_crc:
        raise CorruptFileError(f"{path.name} is damaged (checksum)")
    if count * _ENTRY.size > len(body):
        raise CorruptFileError(f"{path.name}: {count} columns do not fit its body")
    columns: dict[str, npt.NDArray[np.generic]] = {}
    for i in range(count):
        raw_name, raw_dtype, elements, offset = _ENTRY.unpack_from(body, i * _ENTRY.size)
        name = raw_name.rstrip(b"\0").decode("ascii", "replace")
        dtype_str = raw_dtype.rstrip(b"\0").decode("ascii", "replace")
        if dtype_str not in _DTYPES:
            raise CorruptFileError(f"{path.name}: column {name!r} has unknown dtype {dtype_str!r}")
        dtype = np.dtype(dtype_str)
        if offset + elements * dtype.itemsize > len(body) or offset % 8:
            raise CorruptFileError(f"{path.name}: column {name!r} lies outside the file")
        columns[name] = np.frombuffer(body, dtype=dtype, count=elements, offset=offset)
    return columns


def string_columns(name: str, values: Sequence[str]) -> dict[str, npt.NDArray[np.generic]]:
    """``values`` as the two columns ``strings`` reads back."""
    encoded = [value.encode("utf-8") for value in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.uint64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.uint64, count=len(encoded)), out=offsets[1:])
    blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    return {f"{name}.offsets": offsets, f"{name}.utf8": blob}


def strings(columns: Mapping[str, npt.NDArray[np.generic]], name: str) -> list[str]:
    """The strings ``string_columns(name, …)`` stored; CorruptFileError if they are missing or
    inconsistent."""
    try:
        offsets = columns[f"{name}.offsets"]
        blob = columns[f"{name}.utf8"]
    except KeyError:
        raise CorruptFileError(f"the strings {name!r} are missing") from None
    if (
        offsets.dtype != np.uint64
        or blob.dtype != np.uint8
        or not len(offsets)
        or offsets[0] != 0
        or offsets[-1] != len(blob)
        or (len(offsets) > 1 and bool((np.diff(offsets.astype(np.int64)) < 0).any()))
    ):
        raise CorruptFileError(f"the offsets of the strings {name!r} are inconsistent")
    raw = blob.tobytes()
    bounds = offsets.tolist()
    try:
        if raw.isascii():  # one decode, then slices: characters are bytes
            text = raw.decode("ascii")
            return [text[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        return [raw[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    except UnicodeDecodeError as error:
        raise CorruptFileError(f"the strings {name!r} are not UTF-8: {error}") from None
