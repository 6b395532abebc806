"""Kinesis records of events, decoded into the columns ``Profiles.apply`` takes.

A record's ``Data`` is one event in one of two formats, told apart by the first byte, or a KPL
aggregate of such records (``recserve.ingest.kpl``):

``EVENT_FORMAT_BINARY`` (first byte 0xB1), compact binary v1: exactly 44 bytes,
little-endian, no padding::

    u8 magic 0xB1 | u8 type code | u8 flags | u8 reserved (0)
    | u64 event_key | u64 user_key | u64 item_key | u32 watch_ms | u32 duration_ms | i64 ts_ms

    type code  the index of the type's name in EVENT_TYPES
    flags      bit 0 watch_ms present, bit 1 duration_ms present, bit 2 ts present; others 0
    keys       recserve.ids.key_of of event_id, user_id, item_id (never 2^64-1)
    values     0 when their flag is clear; duration_ms > 0 and ts_ms >= 0 when set

JSON (first non-whitespace byte ``{``): one flat object, the HTTP API's event (``EventIn``):
``event_id``, ``user_id``, ``item_id`` (strings of 1..256 code points), ``type`` (a name in
EVENT_TYPES); optional ``watch_ms`` (0 <= x < 2^32), ``duration_ms`` (0 < x < 2^32), ``ts``
(ms since the epoch, 0 <= x < 2^63), ``session_id``, ``request_id`` (strings of at most 256
code points), each of which may be null. UTF-8; no unknown or repeated fields; integers only
(no 1.0, 1e3, booleans, nested values). Ids are hashed after their escapes are decoded.

Both formats: a watch must carry watch_ms; duration_ms may be absent (0), for the consumer to
fill from the catalogue; an absent ts is -1.

``decode_batch`` decodes a ``get_records`` batch in C++ (one call, the parse without the GIL;
a second call for the user records of any aggregates). ``decode_batch_python`` is the same in
plain Python: the reference the tests hold the C++ decoder to, and the benchmark's baseline.
A bad record never stops the batch: it is reported in ``bad`` with the first fault found, in
the same words by both decoders (``invalid JSON: ...`` details aside).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from recserve import _core
from recserve.ids import key_of
from recserve.ingest import kpl
from recserve.profiles import EVENT_TYPES

__all__ = [
    "BINARY_MAGIC",
    "EVENT_FORMAT_BINARY",
    "BadRecord",
    "DecodedBatch",
    "decode_batch",
    "decode_batch_python",
    "encode_binary",
    "encode_json",
]

BINARY_MAGIC = 0xB1
EVENT_FORMAT_BINARY = struct.Struct("<BBBBQQQIIq")  # the layout above, 44 bytes
FLAG_WATCH, FLAG_DURATION, FLAG_TS = 1, 2, 4
_OK, _AGGREGATED = 0, 1
_RESERVED = (1 << 64) - 1
_TYPE_CODES = {name: code for code, name in enumerate(EVENT_TYPES)}
_WATCH = _TYPE_CODES["watch"]
_JSON_SPACE = b" \t\n\r"
_NOT_A_RECORD = 'not a record: expected bytes, or a dict with bytes "Data"'
_NESTED_AGGREGATE = "aggregated: an aggregate inside an aggregate"
_COLUMNS = {
    "event_keys": np.uint64,
    "users": np.uint64,
    "items": np.uint64,
    "types": np.uint8,
    "watch_ms": np.uint32,
    "duration_ms": np.uint32,
    "ts_ms": np.int64,
}

assert EVENT_FORMAT_BINARY.size == _core.ingest.BINARY_SIZE == 44
assert _core.ingest.BINARY_MAGIC == BINARY_MAGIC


@dataclass(frozen=True)
class BadRecord:
    index: int  # the record's position in the batch
    sub_sequence: int  # its user record's position in a KPL aggregate; 0 for a plain record
    reason: str


@dataclass
class DecodedBatch:
    """The good events of a batch, in input order (an aggregate's events where it stood)."""

    event_keys: npt.NDArray[np.uint64]
    users: npt.NDArray[np.uint64]
    items: npt.NDArray[np.uint64]
    types: npt.NDArray[np.uint8]
    watch_ms: npt.NDArray[np.uint32]  # 0: absent
    duration_ms: npt.NDArray[np.uint32]  # 0: absent
    ts_ms: npt.NDArray[np.int64]  # -1: absent
    record_index: npt.NDArray[np.uint32]  # which input record each row came from
    sub_sequence: npt.NDArray[np.uint32]
    bad: list[BadRecord]

    def __len__(self) -> int:
        return len(self.users)


# ---- writing ------------------------------------------------------------------------------
def _checked(type: str, watch_ms: int | None, duration_ms: int | None, ts: int | None) -> int:
    if type not in _TYPE_CODES:
        raise ValueError(f"unknown event type {type!r}")
    if type == "watch" and watch_ms is None:
        raise ValueError("watch_ms: required for a watch")
    for name, value, low, high in (
        ("watch_ms", watch_ms, 0, 1 << 32),
        ("duration_ms", duration_ms, 1, 1 << 32),
        ("ts", ts, 0, 1 << 63),
    ):
        if value is not None and not low <= value < high:
            raise ValueError(f"{name}: {value} out of range [{low}, {high})")
    return _TYPE_CODES[type]


def _checked_id(name: str, value: str) -> str:
    if not 1 <= len(value) <= 256:
        raise ValueError(f"{name}: {len(value)} characters, expected 1 to 256")
    return value


def encode_binary(
    event_id: str,
    user_id: str,
    item_id: str,
    type: str,
    watch_ms: int | None = None,
    duration_ms: int | None = None,
    ts: int | None = None,
) -> bytes:
    """One event in compact binary v1 (the ids travel as their keys)."""
    code = _checked(type, watch_ms, duration_ms, ts)
    flags = (
        (FLAG_WATCH if watch_ms is not None else 0)
        | (FLAG_DURATION if duration_ms is not None else 0)
        | (FLAG_TS if ts is not None else 0)
    )
    keys = [
        key_of(_checked_id(n, v))
        for n, v in (("event_id", event_id), ("user_id", user_id), ("item_id", item_id))
    ]
    return EVENT_FORMAT_BINARY.pack(
        BINARY_MAGIC, code, flags, 0, *keys, watch_ms or 0, duration_ms or 0, ts or 0
    )


def encode_json(
    event_id: str,
    user_id: str,
    item_id: str,
    type: str,
    watch_ms: int | None = None,
    duration_ms: int | None = None,
    ts: int | None = None,
    session_id: str | None = None,
    request_id: str | None = None,
) -> bytes:
    """One event as compact JSON, the API's event shape; absent fields are left out."""
    _checked(type, watch_ms, duration_ms, ts)
    event: dict[str, Any] = {
        "event_id": _checked_id("event_id", event_id),
        "user_id": _checked_id("user_id", user_id),
        "item_id": _checked_id("item_id", item_id),
        "type": type,
    }
    optional = (
        ("watch_ms", watch_ms),
        ("duration_ms", duration_ms),
        ("ts", ts),
        ("session_id", session_id),
        ("request_id", request_id),
    )
    event.update((name, value) for name, value in optional if value is not None)
    return json.dumps(event, separators=(",", ":")).encode()


# ---- reading, in C++ ----------------------------------------------------------------------
def _data(record: Any) -> bytes:
    data = record if isinstance(record, bytes) else record["Data"]
    assert isinstance(data, bytes)
    return data


def decode_batch(records: Sequence[Any]) -> DecodedBatch:
    """The events of a ``get_records`` batch: ``records`` are its dicts (with bytes ``Data``)
    or bytes. Decoded in C++; KPL aggregates de-aggregated here, their user records decoded in
    C++ too."""
    records = records if isinstance(records, list) else list(records)
    columns, status, errors = _core.ingest.decode_records(records)
    bad = [BadRecord(index, 0, reason) for index, reason in errors]
    aggregated = np.flatnonzero(status == _AGGREGATED)
    plain = np.flatnonzero(status == _OK)
    if aggregated.size == 0:
        if plain.size < status.size:  # only the good rows
            columns = {name: column[plain] for name, column in columns.items()}
        zeros = np.zeros(plain.size, dtype=np.uint32)
        return DecodedBatch(
            **columns, record_index=plain.astype(np.uint32), sub_sequence=zeros, bad=bad
        )

    blobs: list[bytes] = []
    owners: list[int] = []
    positions: list[int] = []
    for index in aggregated.tolist():
        try:
            user_records = kpl.deaggregate(_data(records[index]))
        except kpl.KplError as error:
            bad.append(BadRecord(index, 0, f"aggregated: {error}"))
            continue
        for user_record in user_records:
            blobs.append(user_record.data)
            owners.append(index)
            positions.append(user_record.sub_sequence)
    inner, inner_status, inner_errors = _core.ingest.decode_records(blobs)
    bad += [BadRecord(owners[j], positions[j], reason) for j, reason in inner_errors]
    bad += [
        BadRecord(owners[j], positions[j], _NESTED_AGGREGATE)
        for j in np.flatnonzero(inner_status == _AGGREGATED).tolist()
    ]
    bad.sort(key=lambda b: (b.index, b.sub_sequence))

    good = np.flatnonzero(inner_status == _OK)
    record_index = np.concatenate([plain, np.asarray(owners, dtype=np.int64)[good]])
    sub_sequence = np.concatenate(
        [np.zeros(plain.size, dtype=np.int64), np.asarray(positions, dtype=np.int64)[good]]
    )
    order = np.lexsort((sub_sequence, record_index))  # input order, each aggregate in place
    merged = {
        name: np.concatenate([columns[name][plain], inner[name][good]])[order] for name in _COLUMNS
    }
    return DecodedBatch(
        **merged,
        record_index=record_index[order].astype(np.uint32),
        sub_sequence=sub_sequence[order].astype(np.uint32),
        bad=bad,
    )


# ---- reading, in plain Python: the reference ----------------------------------------------
_Row = tuple[int, int, int, int, int, int, int]
_STRING_FIELDS = {"event_id", "user_id", "item_id", "session_id", "request_id"}
_INTEGER_RANGES = {
    "watch_ms": (0, 1 << 32, "[0, 2^32)"),
    "duration_ms": (1, 1 << 32, "[1, 2^32)"),
    "ts": (0, 1 << 63, "[0, 2^63)"),
}
_FIELDS = _STRING_FIELDS | set(_INTEGER_RANGES) | {"type"}
_REQUIRED = ("event_id", "user_id", "item_id", "type")


class _Object(list[tuple[str, Any]]):
    """A JSON object as its (name, value) pairs, so repeated names are seen."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction or exponent"
    if value is None:
        return "null"
    return "an object" if isinstance(value, _Object) else "an array"


def _shown(name: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in name[:64])


def _string_fault(name: str, value: Any) -> str | None:
    if value is None and name in ("session_id", "request_id"):
        return None
    if not isinstance(value, str):
        return f"{name}: expected a string, got {_kind(value)}"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{name}: lone surrogate in string"
    low = 1 if name in _REQUIRED else 0
    if not low <= len(value) <= 256:
        expected = "1 to 256" if low else "at most 256"
        return f"{name}: {len(value)} characters, expected {expected}"
    return None


def _decode_json(data: bytes) -> _Row | str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8"
    try:
        pairs = json.loads(text, object_pairs_hook=_Object, parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:
        return f"invalid JSON: {error}"
    values: dict[str, Any] = {}
    for name, value in pairs:
        if name not in _FIELDS:
            return f'unknown field "{_shown(name)}"'
        if name in values:
            return f'duplicate field "{name}"'
        values[name] = value
        if name in _STRING_FIELDS:
            fault = _string_fault(name, value)
            if fault:
                return fault
        elif name == "type":
            if not isinstance(value, str):
                return f"type: expected a string, got {_kind(value)}"
            if value not in _TYPE_CODES:
                return f'type: unknown event type "{_shown(value)}"'
        elif value is not None:
            if type(value) is not int:
                return f"{name}: expected an integer, got {_kind(value)}"
            low, high, shown = _INTEGER_RANGES[name]
            if not low <= value < high:
                return f"{name}: out of range {shown}"
    for name in _REQUIRED:
        if name not in values:
            return f'missing field "{name}"'
    code = _TYPE_CODES[values["type"]]
    watch, duration, ts = values.get("watch_ms"), values.get("duration_ms"), values.get("ts")
    if code == _WATCH and watch is None:
        return "watch_ms: required for a watch"
    return (
        key_of(values["event_id"]),
        key_of(values["user_id"]),
        key_of(values["item_id"]),
        code,
        watch or 0,
        duration or 0,
        -1 if ts is None else ts,
    )


def _decode_binary(data: bytes) -> _Row | str:
    if len(data) != EVENT_FORMAT_BINARY.size:
        return f"binary: {len(data)} bytes, expected {EVENT_FORMAT_BINARY.size}"
    _, code, flags, reserved, *keys, watch, duration, ts = EVENT_FORMAT_BINARY.unpack(data)
    if code >= len(EVENT_TYPES):
        return f"binary: unknown type code {code}"
    if flags & ~(FLAG_WATCH | FLAG_DURATION | FLAG_TS):
        return f"binary: flags {flags:#04x} set unknown bits"
    if reserved:
        return f"binary: reserved byte is {reserved}, expected 0"
    for name, key in zip(("event_key", "user_key", "item_key"), keys, strict=True):
        if key == _RESERVED:
            return f"binary: {name} is the reserved key 2^64-1"
    for name, value, flag in (
        ("watch_ms", watch, FLAG_WATCH),
        ("duration_ms", duration, FLAG_DURATION),
        ("ts_ms", ts, FLAG_TS),
    ):
        if not flags & flag and value:
            return f"binary: {name} is {value} but its flag is clear"
    if flags & FLAG_DURATION and duration == 0:
        return "binary: duration_ms is 0 but its flag is set"
    if flags & FLAG_TS and ts < 0:
        return f"binary: ts_ms is negative ({ts})"
    if code == _WATCH and not flags & FLAG_WATCH:
        return "binary: a watch without watch_ms"
    return (keys[0], keys[1], keys[2], code, watch, duration, ts if flags & FLAG_TS else -1)


def _decode_one(data: bytes) -> _Row | str | None:
    """A row, a fault, or None for a KPL aggregate."""
    if not data:
        return "undecodable: empty record"
    if data[0] == BINARY_MAGIC:
        return _decode_binary(data)
    if data.startswith(kpl.MAGIC):
        return None
    if data.lstrip(_JSON_SPACE)[:1] == b"{":
        return _decode_json(data)
    return (
        f"undecodable: starts with {data[0]:#04x}, not 0xb1 (binary), '{{' (JSON) or the KPL magic"
    )


def decode_batch_python(records: Sequence[Any]) -> DecodedBatch:
    """``decode_batch`` in plain Python (json, struct, hashlib): the reference and baseline."""
    rows: list[_Row] = []
    origins: list[tuple[int, int]] = []
    bad: list[BadRecord] = []
    for index, record in enumerate(records):
        data = record.get("Data") if isinstance(record, dict) else record
        if not isinstance(data, bytes):
            bad.append(BadRecord(index, 0, _NOT_A_RECORD))
            continue
        decoded = _decode_one(data)
        if decoded is None:
            try:
                user_records = kpl.deaggregate(data)
            except kpl.KplError as error:
                bad.append(BadRecord(index, 0, f"aggregated: {error}"))
                continue
            for user_record in user_records:
                inner = _decode_one(user_record.data)
                if isinstance(inner, tuple):
                    rows.append(inner)
                    origins.append((index, user_record.sub_sequence))
                else:
                    bad.append(
                        BadRecord(
                            index,
                            user_record.sub_sequence,
                            _NESTED_AGGREGATE if inner is None else inner,
                        )
                    )
        elif isinstance(decoded, tuple):
            rows.append(decoded)
            origins.append((index, 0))
        else:
            bad.append(BadRecord(index, 0, decoded))
    columns = zip(*rows, strict=True) if rows else [()] * len(_COLUMNS)
    arrays = {
        name: np.array(values, dtype=dtype)
        for (name, dtype), values in zip(_COLUMNS.items(), columns, strict=True)
    }
    origin = np.array(origins, dtype=np.uint32).reshape(-1, 2)
    return DecodedBatch(
        **arrays, record_index=origin[:, 0].copy(), sub_sequence=origin[:, 1].copy(), bad=bad
    )
