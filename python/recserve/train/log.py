"""The impression log: what the feed served, and what the user did next.

A log is a directory::

    LOG/
      catalog.npz                 the items the log refers to
      impressions-000001.jsonl    append-only segments, numbered from 1
      impressions-000002.jsonl
      ...

**Segments** are UTF-8 JSON Lines. The first line of a segment is its header::

    {"format": "recserve.impressions", "version": 2, "segment": 1, "created_at": 1700000000.0}

and every other line is one record, in append order (which is time order for one writer)::

    {"kind": "impression", "ts": 1700000000.25, "request_id": "r-17", "user": "u42",
     "item": 1234, "position": 0, "model_version": "ranker-3", "arm": "control"}
    {"kind": "event", "ts": 1700000004.5, "event_id": "e-99", "user": "u42", "item": 1234,
     "request_id": "r-17", "type": "watch", "watch_ms": 4200, "duration_ms": 15000}

- ``ts``: Unix seconds (float). ``user``, ``request_id``, ``event_id``, ``model_version`` and
  ``arm``: strings. ``item``, ``position``, ``watch_ms``, ``duration_ms``: integers >= 0.
- ``type``: one of impression, watch, replay, like, share, comment, follow, skip,
  not_interested. An ``impression`` event is the client saying the user saw the item (version
  2; a served item is an ``impression`` record, whatever the client says).
  ``watch_ms`` and ``duration_ms`` are required for ``watch`` (``duration_ms`` > 0) and
  optional (default 0) otherwise. ``request_id`` is optional on events: an event without one
  is joined to the user's latest impression of that item within a window
  (``recserve.train.labels``).
- Unknown keys are ignored (later minor additions stay readable); a missing or mistyped field
  is an error.

A writer never rewrites a file: each ``LogWriter`` starts a new segment, and rolls over to the
next one after ``segment_records`` records. A crash mid-append leaves a last line without its
newline; the reader skips such a line and reports it (``LogReport.skipped``, and a warning on
the ``recserve.train.log`` logger). Any other unreadable line, a header that is not the first
line, or a record that breaks the schema raises ``ValueError`` naming the file and line. A
segment whose header names another format or version is refused; version 1 (no ``impression``
events) is still read.

**The catalogue** (``catalog.npz``, written whole with ``write_catalog``, atomically) holds
``version`` (int, 1), ``item`` (int64 [n], unique ids), ``vector`` (float32 [n, d]) and
``created_at`` (float64 [n], Unix seconds).

**Item ids** are 64-bit: a record's ``item`` is an integer from 0 to 2^64 - 1 (the service's
``recserve.ids.key_of``). The catalogue's ``item`` column holds the int64 view of the same bits
(an id of 2^63 or more is stored as id - 2^64), ``Catalog.keys`` the uint64 view, and
``as_item_ids`` turns either form (or Python ints) into the int64 view, so records and catalogue
meet on the same value.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import numpy.typing as npt

from recserve import profiles
from recserve._files import write_atomic

__all__ = [
    "EVENT_TYPES",
    "FORMAT",
    "VERSION",
    "Catalog",
    "Event",
    "ImpressionLog",
    "Impression",
    "LogReport",
    "LogWriter",
    "Record",
    "as_item_ids",
    "iter_records",
    "read_catalog",
    "read_log",
    "erase_users",
    "write_catalog",
]

FORMAT = "recserve.impressions"
VERSION = 2  # 2: events may be of type impression (the item was viewed)
READABLE_VERSIONS = (1, 2)
CATALOG_FILE = "catalog.npz"
CATALOG_VERSION = 1
_ID_SPAN = 1 << 64  # item ids are 64-bit: 0 <= id < 2^64

#: The update rules' event types. A client's ``impression`` event says the served item was
#: viewed (``recserve.train.labels``); the served item itself is an ``Impression`` record.
EVENT_TYPES: tuple[str, ...] = tuple(profiles.EVENT_TYPES)
EventType = Literal[
    "impression",
    "watch",
    "replay",
    "like",
    "share",
    "comment",
    "follow",
    "skip",
    "not_interested",
]

_SEGMENT = re.compile(r"^impressions-(\d{6,})\.jsonl$")
_logger = logging.getLogger("recserve.train.log")


@dataclass(frozen=True, slots=True)
class Impression:
    """One item served in one feed response."""

    ts: float
    request_id: str
    user: str
    item: int
    position: int
    model_version: str = ""
    arm: str = ""


@dataclass(frozen=True, slots=True)
class Event:
    """One thing a user did with an item."""

    ts: float
    event_id: str
    user: str
    item: int
    type: str
    request_id: str | None = None
    watch_ms: int = 0
    duration_ms: int = 0


Record = Impression | Event


@dataclass(frozen=True)
class Catalog:
    """The items a log refers to: ids, vectors and creation times, row-aligned."""

    item: npt.NDArray[np.int64]
    vector: npt.NDArray[np.float32]
    created_at: npt.NDArray[np.float64]

    @property
    def dims(self) -> int:
        return int(self.vector.shape[1])

    @property
    def keys(self) -> npt.NDArray[np.uint64]:
        """The item ids as records carry them (0 to 2^64 - 1): the uint64 view of ``item``."""
        return self.item.view(np.uint64)

    def rows(self, items: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Row numbers of these item ids (either view, or Python ints as in the records);
        ValueError naming the first id not in the catalogue."""
        ids = as_item_ids(items)
        order = np.argsort(self.item, kind="stable")
        sorted_ids = self.item[order]
        pos = np.minimum(np.searchsorted(sorted_ids, ids), max(len(sorted_ids) - 1, 0))
        found = sorted_ids[pos] == ids if len(sorted_ids) else np.zeros(ids.shape, dtype=bool)
        if not found.all():
            first = int(ids.view(np.uint64)[np.flatnonzero(~found)[0]])
            raise ValueError(f"item {first} is not in the log's catalogue")
        return order[pos].astype(np.int64)


@dataclass
class LogReport:
    """What reading a log found: segments and records read, lines skipped (with the reason)."""

    segments: int = 0
    records: int = 0
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImpressionLog:
    """A whole log in memory: records in append order, the catalogue and the read report."""

    records: list[Record]
    catalog: Catalog
    report: LogReport


def as_item_ids(items: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Item ids as the catalogue holds them, 1-d: the int64 view of the 64-bit ids. Takes a
    uint64 array (the service's keys), an int64 one (already the view), or integers (a record's
    ids, 0 to 2^64 - 1; negative ones are taken as the view already). ValueError for anything
    else: a float array, or an integer outside [-2^63, 2^64)."""
    if isinstance(items, np.ndarray) and items.dtype.kind in "iu":
        if items.dtype.kind == "u":
            return items.astype(np.uint64).view(np.int64).reshape(-1)
        return items.astype(np.int64).reshape(-1)
    values = np.asarray(items, dtype=object).reshape(-1)  # Python ints as they are: no floats
    out = np.empty(len(values), dtype=np.uint64)
    for k, value in enumerate(values.tolist()):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"item ids must be integers, got {value!r}")
        value = int(value)
        if not -(_ID_SPAN >> 1) <= value < _ID_SPAN:
            raise ValueError(f"item id {value} is not a 64-bit id")
        out[k] = value % _ID_SPAN
    return out.view(np.int64)


def write_catalog(
    directory: str | os.PathLike[str],
    item: npt.ArrayLike,
    vector: npt.ArrayLike,
    created_at: npt.ArrayLike,
) -> Path:
    """Write (atomically replace) ``catalog.npz``; returns its path. ``item``: the ids in
    any form ``as_item_ids`` takes (uint64 keys, int64, Python ints up to 2^64 - 1)."""
    if not isinstance(item, np.ndarray) or item.dtype.kind not in "iu":
        item = as_item_ids(item)
    catalog = _checked_catalog(
        np.asarray(item), np.asarray(vector), np.asarray(created_at), "catalog"
    )
    path = Path(directory) / CATALOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{CATALOG_FILE}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            np.savez(
                f,
                version=np.array(CATALOG_VERSION, dtype=np.int64),
                item=catalog.item,
                vector=catalog.vector,
                created_at=catalog.created_at,
            )
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_catalog(directory: str | os.PathLike[str]) -> Catalog:
    path = Path(directory) / CATALOG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no catalogue (every log directory has a {CATALOG_FILE})")
    try:
        with path.open("rb") as f:  # closed whatever np.load makes of it
            data = np.load(f, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            with data:
                version = int(data["version"])
                arrays = data["item"], data["vector"], data["created_at"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: unreadable catalogue ({exc})") from exc
    if version != CATALOG_VERSION:
        raise ValueError(
            f"{path}: catalogue version {version} is not supported "
            f"(this recserve reads version {CATALOG_VERSION})"
        )
    return _checked_catalog(*arrays, str(path))


def _checked_catalog(
    item: npt.NDArray[Any], vector: npt.NDArray[Any], created_at: npt.NDArray[Any], where: str
) -> Catalog:
    if item.ndim != 1 or item.dtype.kind not in "iu":
        raise ValueError(
            f"{where}: item must be a 1-d integer array, got {item.dtype} {item.shape}"
        )
    n = item.shape[0]
    if vector.ndim != 2 or vector.shape[0] != n or vector.dtype.kind != "f":
        raise ValueError(
            f"{where}: vector must be a float array of shape ({n}, d), got {vector.shape}"
        )
    if created_at.shape != (n,) or created_at.dtype.kind not in "iuf":
        raise ValueError(f"{where}: created_at must have shape ({n},), got {created_at.shape}")
    if len(np.unique(item)) != n:
        raise ValueError(f"{where}: item ids must be unique")
    if not np.isfinite(vector).all():
        raise ValueError(f"{where}: vector contains NaN or inf")
    if not np.isfinite(created_at).all():
        raise ValueError(f"{where}: created_at contains NaN or inf")
    return Catalog(
        as_item_ids(item),
        np.ascontiguousarray(vector, dtype=np.float32),
        created_at.astype(np.float64),
    )


def _segments(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for path in directory.iterdir():
        match = _SEGMENT.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


class LogWriter:
    """Appends records to a new segment of a log directory.

    >>> with LogWriter("logs/2024-06-01") as log:
    ...     log.append(Impression(ts, "r-1", "u42", 1234, position=0))
    ...     log.flush()                       # records so far reach the OS (fsync=True: disk)
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        segment_records: int = 1_000_000,
        fsync: bool = False,
    ) -> None:
        if segment_records < 1:
            raise ValueError(f"segment_records must be >= 1, got {segment_records}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._segment_records = segment_records
        self._fsync = fsync
        existing = _segments(self.directory)
        self._next_segment = existing[-1][0] + 1 if existing else 1
        self._file: IO[str] | None = None
        self._in_segment = 0

    @property
    def path(self) -> Path | None:
        """The segment being written (None before the first append)."""
        return None if self._file is None else Path(self._file.name)

    def append(self, record: Record) -> None:
        if self._file is None or self._in_segment >= self._segment_records:
            self._roll()
        assert self._file is not None
        self._file.write(json.dumps(_to_json(record), separators=(",", ":")) + "\n")
        self._in_segment += 1

    def extend(self, records: Sequence[Record]) -> None:
        for record in records:
            self.append(record)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _roll(self) -> None:
        self.close()
        number = self._next_segment
        self._next_segment += 1
        path = self.directory / f"impressions-{number:06d}.jsonl"
        self._file = path.open("x", encoding="utf-8", newline="\n")
        header = {
            "format": FORMAT,
            "version": VERSION,
            "segment": number,
            "created_at": time.time(),
        }
        self._file.write(json.dumps(header) + "\n")
        self._in_segment = 0


def erase_users(directory: str | os.PathLike[str], users: set[str]) -> int:
    """Rewrites every segment of the log without the records of ``users`` (the right to
    erasure; each file replaced whole). Returns how many records went. Close the directory's
    writer first: its open segment is rewritten too, and a writer never appends to a file it
    did not start."""
    removed = 0
    path = Path(directory)
    if not users or not path.is_dir():
        return 0
    for _, segment in _segments(path):
        data = segment.read_bytes()
        lines = data.split(b"\n")
        torn = lines.pop()  # b"" unless a crash cut the last append short: it goes too
        kept = [line for line in lines if json.loads(line).get("user") not in users]
        if torn or len(kept) < len(lines):
            write_atomic(segment, b"".join(line + b"\n" for line in kept))
            removed += len(lines) - len(kept)
    return removed


def _to_json(record: Record) -> dict[str, Any]:
    if isinstance(record, Impression):
        return {
            "kind": "impression",
            "ts": record.ts,
            "request_id": record.request_id,
            "user": record.user,
            "item": record.item,
            "position": record.position,
            "model_version": record.model_version,
            "arm": record.arm,
        }
    out: dict[str, Any] = {
        "kind": "event",
        "ts": record.ts,
        "event_id": record.event_id,
        "user": record.user,
        "item": record.item,
        "type": record.type,
    }
    if record.request_id is not None:
        out["request_id"] = record.request_id
    if record.type == "watch" or record.watch_ms or record.duration_ms:
        out["watch_ms"] = record.watch_ms
        out["duration_ms"] = record.duration_ms
    return out


def iter_records(
    directory: str | os.PathLike[str], report: LogReport | None = None
) -> Iterator[Record]:
    """Every record of every segment, in segment then line order."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such log directory")
    report = report if report is not None else LogReport()
    for _, path in _segments(root):
        report.segments += 1
        yield from _read_segment(path, report)


def read_log(directory: str | os.PathLike[str]) -> ImpressionLog:
    """The catalogue and all records of a log directory."""
    report = LogReport()
    records = list(iter_records(directory, report))
    return ImpressionLog(records, read_catalog(directory), report)


def _read_segment(path: Path, report: LogReport) -> Iterator[Record]:
    with path.open("rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    # A complete file ends with "\n", so its split ends with an empty string; anything else
    # there is a last line cut short by a crash mid-append.
    tail = lines.pop()
    if tail:
        try:
            parsed = _parse(tail)
        except ValueError as exc:
            message = (
                f"{path}:{len(lines) + 1}: truncated last line skipped ({len(tail)} bytes: {exc})"
            )
            report.skipped.append(message)
            _logger.warning("%s", message)
        else:
            lines.append(tail)
            del parsed
    if not lines:
        return
    try:
        header = _parse(lines[0])
    except ValueError as exc:
        raise ValueError(f"{path}:1: unreadable segment header ({exc})") from exc
    if header.get("format") != FORMAT:
        raise ValueError(
            f"{path}:1: not an impression-log segment (format {header.get('format')!r})"
        )
    if header.get("version") not in READABLE_VERSIONS:
        raise ValueError(
            f"{path}:1: impression-log version {header.get('version')!r} is not supported "
            f"(this recserve reads versions {', '.join(map(str, READABLE_VERSIONS))})"
        )
    for number, line in enumerate(lines[1:], start=2):
        try:
            record = _record(_parse(line))
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from exc
        report.records += 1
        yield record


def _parse(line: bytes) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _record(obj: dict[str, Any]) -> Record:
    kind = obj.get("kind")
    if kind == "impression":
        return Impression(
            ts=_time(obj),
            request_id=_str(obj, "request_id"),
            user=_str(obj, "user"),
            item=_item(obj),
            position=_int(obj, "position"),
            model_version=_str(obj, "model_version", ""),
            arm=_str(obj, "arm", ""),
        )
    if kind == "event":
        type_ = _str(obj, "type")
        if type_ not in EVENT_TYPES:
            raise ValueError(f"field 'type': {type_!r} is not one of {', '.join(EVENT_TYPES)}")
        request_id = obj.get("request_id")
        if request_id is not None and not isinstance(request_id, str):
            raise ValueError("field 'request_id' must be a string when present")
        watch = type_ == "watch"
        event = Event(
            ts=_time(obj),
            event_id=_str(obj, "event_id"),
            user=_str(obj, "user"),
            item=_item(obj),
            type=type_,
            request_id=request_id,
            watch_ms=_int(obj, "watch_ms", None if watch else 0),
            duration_ms=_int(obj, "duration_ms", None if watch else 0),
        )
        if watch and event.duration_ms == 0:
            raise ValueError("field 'duration_ms' must be > 0 on a watch event")
        return event
    if "format" in obj:
        raise ValueError("a segment header where a record belongs")
    raise ValueError(f"field 'kind' must be 'impression' or 'event', got {kind!r}")


def _time(obj: dict[str, Any]) -> float:
    value = obj.get("ts")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"field 'ts' must be a finite number, got {value!r}")
    return float(value)


def _str(obj: dict[str, Any], key: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"field {key!r} must be a string, got {value!r}")
    return value


def _int(obj: dict[str, Any], key: str, default: int | None = None) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"field {key!r} must be an integer >= 0, got {value!r}")
    return value


def _item(obj: dict[str, Any]) -> int:
    value = _int(obj, "item")
    if value >= _ID_SPAN:
        raise ValueError(f"field 'item' must be a 64-bit id (below 2^64), got {value}")
    return value
