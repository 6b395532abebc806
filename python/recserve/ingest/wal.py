"""The write-ahead log: every acknowledged batch is on disk before its caller hears back.

A log is a directory of segments, ``wal-<first lsn>.log``, each a 16-byte header (magic and
first lsn) and then records::

    u32 payload length | u32 CRC-32C of the payload | payload = u8 kind, u64 lsn, body

Record lsns are consecutive from 1. ``append`` is a group commit: concurrent callers' records
are written together and made durable by one ``fsync`` (of the file, and of the directory when
a segment is created), and each caller returns once its record is durable. Segments rotate at
``segment_bytes`` and on ``rotate()``; ``drop_through(lsn)`` deletes segments whose records all
lie at or below lsn.

Opening a log checks every record. A torn tail (the end of the newest segment, where a crash
cut a write short) is cut off at the last complete record. A damaged record with intact records
after it, or a gap in the lsns, is corruption: ``CorruptFileError`` naming segment and offset,
never skipped.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from recserve import _core
from recserve._core import CorruptFileError
from recserve._files import fsync_directory

__all__ = ["Record", "WriteAheadLog"]

_MAGIC = b"RSWAL\x00\x00\x01"
_SEGMENT_HEADER = struct.Struct("<8sQ")
_RECORD_HEADER = struct.Struct("<II")
_PAYLOAD_PREFIX = struct.Struct("<BQ")
MAX_RECORD_BYTES = 1 << 30


@dataclass(frozen=True)
class Record:
    lsn: int
    kind: int
    body: bytes


def _segment_name(first_lsn: int) -> str:
    return f"wal-{first_lsn:020d}.log"


def _frame(kind: int, lsn: int, body: bytes) -> bytes:
    prefix = _PAYLOAD_PREFIX.pack(kind, lsn)
    crc = _core.crc32c(body, _core.crc32c(prefix))  # no copy of the body to checksum it
    return b"".join((_RECORD_HEADER.pack(len(prefix) + len(body), crc), prefix, body))


def _record_at(data: bytes | memoryview, offset: int) -> tuple[int, int, bytes] | None:
    """(kind, lsn, body) of an intact record at offset, else None."""
    if len(data) - offset < _RECORD_HEADER.size:
        return None
    length, crc = _RECORD_HEADER.unpack_from(data, offset)
    start = offset + _RECORD_HEADER.size
    if length < _PAYLOAD_PREFIX.size or length > len(data) - start:
        return None
    payload = bytes(data[start : start + length])
    if _core.crc32c(payload) != crc:
        return None
    kind, lsn = _PAYLOAD_PREFIX.unpack_from(payload)
    return kind, lsn, payload[_PAYLOAD_PREFIX.size :]


def _intact_record_after(data: bytes, offset: int, after_lsn: int) -> int | None:
    """The offset of an intact record past offset with an lsn above after_lsn, if any: what
    tells a damaged record in the middle of the log from a torn tail."""
    for at in range(offset + 1, len(data) - _RECORD_HEADER.size - _PAYLOAD_PREFIX.size + 1):
        length = int.from_bytes(data[at : at + 4], "little")
        if length < _PAYLOAD_PREFIX.size or length > len(data) - at - _RECORD_HEADER.size:
            continue
        lsn = int.from_bytes(data[at + 9 : at + 17], "little")
        if after_lsn < lsn <= after_lsn + len(data) and _record_at(data, at) is not None:
            return at
    return None


class WriteAheadLog:
    def __init__(self, directory: str | os.PathLike[str], *, segment_bytes: int = 64 << 20) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.torn_bytes_cut = 0  # bytes cut off a torn tail when the log was opened
        self._records: list[Record] | None = []
        self._segments = self._scan()  # (first lsn, path), oldest first
        # Appends go to the newest segment, opened on the first append (None: start a new one).
        self._append_to = self._segments[-1][1] if self._segments else None
        self._file: BinaryIO | None = None
        self._cond = threading.Condition()
        self._pending: list[tuple[int, bytes]] = []
        self._flushing = False
        self._failed: BaseException | None = None
        self.last_lsn = self._last_lsn_scanned
        self._next_lsn = self.last_lsn + 1
        self._durable_lsn = self.last_lsn

    # ---- opening ---------------------------------------------------------------------------
    def _scan(self) -> list[tuple[int, Path]]:
        paths = sorted(self.directory.glob("wal-*.log"))
        segments: list[tuple[int, Path]] = []
        expected: int | None = None
        assert self._records is not None
        for index, path in enumerate(paths):
            data = path.read_bytes()
            newest = index == len(paths) - 1
            if len(data) < _SEGMENT_HEADER.size:
                if newest:  # created, then cut short by a crash before any record
                    self.torn_bytes_cut += len(data)
                    path.unlink()
                    fsync_directory(self.directory)
                    continue
                raise CorruptFileError(f"WAL segment {path} is shorter than its header")
            magic, first = _SEGMENT_HEADER.unpack_from(data)
            if magic != _MAGIC or path.name != _segment_name(first):
                raise CorruptFileError(f"WAL segment {path} has a damaged header")
            if expected is not None and first != expected:
                raise CorruptFileError(
                    f"WAL segment {path} starts at lsn {first}, expected {expected}: "
                    "a segment is missing"
                )
            expected = first
            offset = _SEGMENT_HEADER.size
            while offset < len(data):
                record = _record_at(data, offset)
                if record is None or record[1] != expected:
                    later = _intact_record_after(data, offset, expected - 1)
                    if (
                        not newest
                        or later is not None
                        or (record is not None and record[1] != expected)
                    ):
                        raise CorruptFileError(
                            f"WAL segment {path} has a damaged record at byte {offset} "
                            f"(lsn {expected}) "
                            "followed by intact records: the log is corrupt in the middle"
                        )
                    self.torn_bytes_cut += len(data) - offset
                    with open(path, "r+b") as f:
                        f.truncate(offset)
                        os.fsync(f.fileno())
                    break
                kind, lsn, body = record
                self._records.append(Record(lsn, kind, body))
                offset += _RECORD_HEADER.size + _PAYLOAD_PREFIX.size + len(body)
                expected += 1
            segments.append((first, path))
        self._last_lsn_scanned = (expected - 1) if expected is not None else 0
        return segments

    def records(self, after_lsn: int = 0) -> Iterator[Record]:
        """The records read when the log was opened, with lsn > after_lsn (once: they are
        released afterwards)."""
        records, self._records = self._records, None
        if records is None:
            raise RuntimeError("records() can be read once, right after opening")
        first = self._segments[0][0] if self._segments else self.last_lsn + 1
        if after_lsn + 1 < first:
            raise CorruptFileError(
                f"the WAL starts at lsn {first} but records after {after_lsn} are needed: "
                "segments are missing"
            )
        return (r for r in records if r.lsn > after_lsn)

    # ---- appending -------------------------------------------------------------------------
    def append(self, kind: int, body: bytes | Callable[[int], bytes]) -> int:
        """Appends one record; returns its lsn once it is durable (group commit). ``body`` may
        be a function of the record's lsn, called once the lsn is assigned (so a body can carry
        numbers that grow in log order)."""
        with self._cond:
            if self._failed is not None:
                raise OSError(f"the WAL failed earlier and takes no more records: {self._failed}")
            lsn = self._next_lsn
            data = body(lsn) if callable(body) else body
            self._next_lsn += 1
            self._pending.append((lsn, _frame(kind, lsn, data)))
            while self._durable_lsn < lsn:
                if self._failed is not None:
                    raise OSError(f"the WAL write that held this record failed: {self._failed}")
                if self._flushing:
                    self._cond.wait()
                    continue
                self._flushing = True  # this caller writes everyone's pending records
                batch, self._pending = self._pending, []
                self._cond.release()
                try:
                    self._write(batch)
                except BaseException as error:
                    self._cond.acquire()
                    self._failed = error
                    self._flushing = False
                    self._cond.notify_all()
                    raise
                self._cond.acquire()
                self._durable_lsn = batch[-1][0]
                self.last_lsn = self._durable_lsn
                self._flushing = False
                self._cond.notify_all()
            return lsn

    def _write(self, batch: list[tuple[int, bytes]]) -> None:
        if self._file is None and self._append_to is not None:
            self._file = open(self._append_to, "ab")  # noqa: SIM115
        if self._file is None or self._file.tell() >= self.segment_bytes:
            self._open_segment(batch[0][0])
        assert self._file is not None
        self._file.write(b"".join(frame for _, frame in batch))
        self._file.flush()
        os.fsync(self._file.fileno())

    def _open_segment(self, first_lsn: int) -> None:
        if self._file is not None:
            self._file.close()
        path = self.directory / _segment_name(first_lsn)
        self._file = open(path, "wb")  # noqa: SIM115
        self._append_to = path
        self._file.write(_SEGMENT_HEADER.pack(_MAGIC, first_lsn))
        self._file.flush()
        os.fsync(self._file.fileno())
        fsync_directory(self.directory)
        self._segments.append((first_lsn, path))

    def rotate(self) -> None:
        """Starts a new segment with the next record (so older ones can be dropped whole)."""
        with self._cond:
            while self._flushing:
                self._cond.wait()
            if (
                self._append_to is not None
                and self._append_to.stat().st_size > _SEGMENT_HEADER.size
            ):
                if self._file is not None:
                    self._file.close()
                self._file = None
                self._append_to = None

    def drop_through(self, lsn: int) -> int:
        """Deletes segments whose records all have lsn <= lsn; returns how many."""
        with self._cond:
            dropped = 0
            while len(self._segments) > 1 and self._segments[1][0] <= lsn + 1:
                self._segments.pop(0)[1].unlink()
                dropped += 1
            if dropped:
                fsync_directory(self.directory)
            return dropped

    def segments(self) -> list[Path]:
        return [path for _, path in self._segments]

    def close(self) -> None:
        with self._cond:
            while self._flushing:
                self._cond.wait()
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
