"""The store's log records of the catalogue and of user preferences, written and read back.

Items, takedowns, user preferences and review decisions are records of the store's log (kinds
16-19) beside the events, so one recovery brings back all of them in order. A record's body is

    u32 header length | header: compact JSON | tail

    ITEMS       {"ts_ms": int, "items": [Item.to_row(), ...], "amplify": false}
                tail: the items' float32 vectors, row after row (dims from the catalogue);
                "amplify" is there only when false (older records lack it: they all amplified)
    TAKE_DOWN   {"keys": ["<u64 key>", ...]}                     no tail
    USER_PREFS  {"user": "<u64 key>", "interests": [...] | null, "blocked": [...] | null}
    REVIEW      {"ts_ms": int, "key": "<u64 key>", "decision": "approve" | "reject",
                 "reason": str}                                   no tail
    STREAMED    {"seq": "<sequence number>", "kind": int}        tail: that record's body
                one of the above as read from the catalogue stream (``catalogue_stream``),
                logged with its position so a restart reads the stream on from there

Keys travel as strings: JSON readers elsewhere may hold numbers as doubles.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from recserve.catalog import Item
from recserve.store.embedded import EXTENSION_KINDS

__all__ = [
    "ITEMS",
    "REVIEW",
    "STREAMED",
    "TAKE_DOWN",
    "USER_PREFS",
    "ItemsRecord",
    "ReviewRecord",
    "StreamedRecord",
    "TakeDownRecord",
    "UserPrefsRecord",
    "decode",
    "items_record",
    "review_record",
    "streamed_record",
    "take_down_record",
    "user_prefs_record",
]

ITEMS, TAKE_DOWN, USER_PREFS, REVIEW, STREAMED = (EXTENSION_KINDS + k for k in range(5))
CATALOGUE_KINDS = (ITEMS, TAKE_DOWN, REVIEW)  # the kinds the catalogue stream carries
_HEADER_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class ItemsRecord:
    ts_ms: int
    items: list[Item]
    vectors: npt.NDArray[np.float32]  # (len(items), dims), a view of the record's bytes
    amplify: bool


@dataclass(frozen=True)
class TakeDownRecord:
    keys: list[int]


@dataclass(frozen=True)
class ReviewRecord:
    ts_ms: int
    key: int
    decision: str
    reason: str


@dataclass(frozen=True)
class StreamedRecord:
    seq: str  # the catalogue stream's sequence number of the record
    kind: int
    body: bytes


@dataclass(frozen=True)
class UserPrefsRecord:
    user: int
    interests: list[str] | None
    blocked: list[str] | None


def items_record(
    ts_ms: int, items: Sequence[Item], vectors: npt.NDArray[np.float32], *, amplify: bool
) -> bytes:
    header: dict[str, Any] = {"ts_ms": ts_ms, "items": [item.to_row() for item in items]}
    if not amplify:
        header["amplify"] = False
    return _encode(header, vectors.tobytes())


def take_down_record(keys: Sequence[int]) -> bytes:
    return _encode({"keys": [str(key) for key in keys]})


def user_prefs_record(
    user: int, interests: Sequence[str] | None, blocked: Sequence[str] | None
) -> bytes:
    header = {
        "user": str(user),
        "interests": None if interests is None else list(interests),
        "blocked": None if blocked is None else list(blocked),
    }
    return _encode(header)


def review_record(ts_ms: int, key: int, decision: str, reason: str) -> bytes:
    return _encode({"ts_ms": ts_ms, "key": str(key), "decision": decision, "reason": reason})


def streamed_record(seq: str, kind: int, body: bytes) -> bytes:
    return _encode({"seq": seq, "kind": kind}, body)


def decode(
    kind: int, body: bytes, dims: int
) -> ItemsRecord | TakeDownRecord | UserPrefsRecord | ReviewRecord | StreamedRecord:
    """The record of ``kind``; ValueError for a kind not of this module."""
    (length,) = _HEADER_LENGTH.unpack_from(body)
    header = json.loads(body[_HEADER_LENGTH.size : _HEADER_LENGTH.size + length])
    if kind == ITEMS:
        items = [Item.from_row(row) for row in header["items"]]
        vectors = np.frombuffer(
            body, dtype=np.float32, offset=_HEADER_LENGTH.size + length
        ).reshape(len(items), dims)
        return ItemsRecord(header["ts_ms"], items, vectors, header.get("amplify", True))
    if kind == TAKE_DOWN:
        return TakeDownRecord([int(key) for key in header["keys"]])
    if kind == USER_PREFS:
        return UserPrefsRecord(int(header["user"]), header["interests"], header["blocked"])
    if kind == REVIEW:
        return ReviewRecord(
            header["ts_ms"], int(header["key"]), header["decision"], header["reason"]
        )
    if kind == STREAMED:
        return StreamedRecord(
            header["seq"], header["kind"], bytes(body[_HEADER_LENGTH.size + length :])
        )
    raise ValueError(f"unknown record kind {kind}")


def _encode(header: dict[str, Any], tail: bytes = b"") -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    return _HEADER_LENGTH.pack(len(text)) + text + tail
