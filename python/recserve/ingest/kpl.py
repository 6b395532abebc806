"""KPL record aggregation: many user records in one Kinesis record, as the Kinesis Producer
Library writes them and the KCL reads them (the format is documented in the
amazon-kinesis-producer repository, ``aggregation-format.md``)::

    magic 0xF3 0x89 0x9A 0xC2 | protobuf AggregatedRecord | MD5 of the protobuf (16 bytes)

    message AggregatedRecord { repeated string partition_key_table = 1;
                               repeated string explicit_hash_key_table = 2;
                               repeated Record records = 3; }
    message Record { required uint64 partition_key_index = 1;
                     optional uint64 explicit_hash_key_index = 2;
                     required bytes data = 3;
                     repeated Tag tags = 4; }          // tags are read past, not kept

``deaggregate`` checks the magic, the MD5 and every field, and raises ``KplError`` (a
ValueError) naming what is wrong: a damaged record is never half-read. A blob without the magic
is not aggregated (``is_aggregated``): it is one user record as it stands. The user records'
order is their sub-sequence number within the Kinesis record, which checkpoints carry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = ["MAGIC", "KplError", "UserRecord", "aggregate", "deaggregate", "is_aggregated"]

MAGIC = b"\xf3\x89\x9a\xc2"
_DIGEST = 16
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


class KplError(ValueError):
    """An aggregated record that cannot be read whole."""


@dataclass(frozen=True)
class UserRecord:
    partition_key: str
    explicit_hash_key: str | None
    data: bytes
    sub_sequence: int  # the record's position in its aggregate


def is_aggregated(blob: bytes) -> bool:
    return len(blob) >= len(MAGIC) + _DIGEST and blob[: len(MAGIC)] == MAGIC


# ---- protobuf wire format, the small part of it this message needs ----------------------------
def _varint(buf: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(buf):
            raise KplError("a varint runs past the end of its message")
        byte = buf[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise KplError("a varint is longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) for each field of one message."""
    at = 0
    while at < len(buf):
        key, at = _varint(buf, at)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise KplError("field number 0")
        if wire == _VARINT:
            value, at = _varint(buf, at)
            yield number, wire, value
        elif wire == _BYTES:
            length, at = _varint(buf, at)
            if length > len(buf) - at:
                raise KplError(f"field {number} claims {length} bytes, {len(buf) - at} remain")
            yield number, wire, buf[at : at + length]
            at += length
        elif wire in (_FIXED64, _FIXED32):
            at += 8 if wire == _FIXED64 else 4
            if at > len(buf):
                raise KplError(f"field {number} runs past the end of its message")
        else:
            raise KplError(f"field {number} has unsupported wire type {wire}")


def _text(value: int | memoryview, what: str) -> str:
    if not isinstance(value, memoryview):
        raise KplError(f"{what} is not a string")
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise KplError(f"{what} is not UTF-8") from None


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _BYTES) + _encode_varint(len(payload)) + payload


# ---- the record ---------------------------------------------------------------------------
def deaggregate(blob: bytes) -> list[UserRecord]:
    """The user records of one aggregated Kinesis record, in order."""
    if not is_aggregated(blob):
        raise KplError("not an aggregated record (no KPL magic, or too short for its checksum)")
    message = memoryview(blob)[len(MAGIC) : -_DIGEST]
    if hashlib.md5(message).digest() != blob[-_DIGEST:]:  # the format's checksum, not security
        raise KplError("the MD5 checksum does not match the message")
    partition_keys: list[str] = []
    hash_keys: list[str] = []
    raw: list[memoryview] = []
    for number, wire, value in _fields(message):
        if number == 1 and wire == _BYTES:
            partition_keys.append(_text(value, "a partition key"))
        elif number == 2 and wire == _BYTES:
            hash_keys.append(_text(value, "an explicit hash key"))
        elif number == 3 and wire == _BYTES:
            assert isinstance(value, memoryview)
            raw.append(value)
        elif number in (1, 2, 3):
            raise KplError(f"AggregatedRecord field {number} has wire type {wire}")
    records = []
    for position, body in enumerate(raw):
        pk_index: int | None = None
        hk_index: int | None = None
        data: bytes | None = None
        for number, wire, value in _fields(body):
            if number in (1, 2) and wire == _VARINT:
                assert isinstance(value, int)
                if number == 1:
                    pk_index = value
                else:
                    hk_index = value
            elif number == 3 and wire == _BYTES:
                assert isinstance(value, memoryview)
                data = bytes(value)
            elif number in (1, 2, 3):
                raise KplError(f"record {position}: field {number} has wire type {wire}")
        if pk_index is None or data is None:
            missing = "partition_key_index" if pk_index is None else "data"
            raise KplError(f"record {position} has no {missing}")
        if pk_index >= len(partition_keys):
            raise KplError(
                f"record {position}: partition key index {pk_index} of {len(partition_keys)}"
            )
        if hk_index is not None and hk_index >= len(hash_keys):
            raise KplError(
                f"record {position}: explicit hash key index {hk_index} of {len(hash_keys)}"
            )
        records.append(
            UserRecord(
                partition_keys[pk_index],
                None if hk_index is None else hash_keys[hk_index],
                data,
                position,
            )
        )
    return records


def aggregate(records: Sequence[tuple[str, bytes] | tuple[str, bytes, str | None]]) -> bytes:
    """One aggregated record of (partition key, data[, explicit hash key]) user records; keys
    are stored once each, as the KPL does."""
    if not records:
        raise ValueError("an aggregated record needs at least one user record")
    partition_keys: dict[str, int] = {}
    hash_keys: dict[str, int] = {}
    bodies = []
    for record in records:
        key, data = record[0], record[1]
        hash_key = record[2] if len(record) > 2 else None
        body = _encode_varint(1 << 3 | _VARINT) + _encode_varint(
            partition_keys.setdefault(key, len(partition_keys))
        )
        if hash_key is not None:
            body += _encode_varint(2 << 3 | _VARINT) + _encode_varint(
                hash_keys.setdefault(hash_key, len(hash_keys))
            )
        bodies.append(body + _field(3, bytes(data)))
    message = b"".join(
        [_field(1, key.encode()) for key in partition_keys]
        + [_field(2, key.encode()) for key in hash_keys]
        + [_field(3, body) for body in bodies]
    )
    return MAGIC + message + hashlib.md5(message).digest()  # the format's checksum, not security
