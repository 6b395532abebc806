"""recserve.ingest.records: Kinesis records decoded in C++, held to the plain-Python reference
and to the events they were encoded from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recserve.ids import key_of
from recserve.ingest import kpl
from recserve.ingest.records import (
    EVENT_FORMAT_BINARY,
    BadRecord,
    DecodedBatch,
    decode_batch,
    decode_batch_python,
    encode_binary,
    encode_json,
)
from recserve.profiles import EVENT_TYPES

COLUMNS = ("event_keys", "users", "items", "types", "watch_ms", "duration_ms", "ts_ms",
           "record_index", "sub_sequence")  # fmt: skip
FRACTION = "a number with a fraction or exponent"
GOOD = encode_json("e1", "u1", "v1", "watch", watch_ms=4000, duration_ms=9000, ts=17)


def _reason(reason: str) -> str:
    # Python's json and the C++ parser word a syntax error differently; the class is the same.
    return "invalid JSON" if reason.startswith("invalid JSON: ") else reason


def assert_same(a: DecodedBatch, b: DecodedBatch) -> None:
    for name in COLUMNS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert [(r.index, r.sub_sequence, _reason(r.reason)) for r in a.bad] == [
        (r.index, r.sub_sequence, _reason(r.reason)) for r in b.bad
    ]


def decoded(records: list[Any]) -> DecodedBatch:
    """The C++ decoder's batch, checked against the Python reference."""
    batch = decode_batch(records)
    assert_same(batch, decode_batch_python(records))
    return batch


def reasons(data: bytes) -> list[str]:
    """Why one record is bad, as each decoder says it (both must find it bad)."""
    out = []
    for decode in (decode_batch, decode_batch_python):
        batch = decode([data])
        assert len(batch) == 0
        assert len(batch.bad) == 1
        out.append(batch.bad[0].reason)
    return out


# ---- events as the producer writes them ----------------------------------------------------
@dataclass(frozen=True)
class Event:
    event_id: str
    user_id: str
    item_id: str
    type: str
    watch_ms: int | None
    duration_ms: int | None
    ts: int | None

    def encode(self, fmt: str) -> bytes:
        args = (self.event_id, self.user_id, self.item_id, self.type, self.watch_ms,
                self.duration_ms, self.ts)  # fmt: skip
        return encode_binary(*args) if fmt == "binary" else encode_json(*args)

    def row(self) -> tuple[int, ...]:
        return (key_of(self.event_id), key_of(self.user_id), key_of(self.item_id),
                EVENT_TYPES.index(self.type), self.watch_ms or 0, self.duration_ms or 0,
                -1 if self.ts is None else self.ts)  # fmt: skip


ids = st.text(min_size=1, max_size=24)


@st.composite
def events(draw: st.DrawFn) -> Event:
    type_ = draw(st.sampled_from(EVENT_TYPES))
    watch = st.integers(0, 2**32 - 1)
    return Event(
        draw(ids),
        draw(ids),
        draw(ids),
        type_,
        draw(watch if type_ == "watch" else st.none() | watch),
        draw(st.none() | st.integers(1, 2**32 - 1)),
        draw(st.none() | st.integers(0, 2**63 - 1)),
    )


formats = st.sampled_from(["binary", "json"])
# A batch entry: (kind, what): an event, an aggregate of events, or bytes that are no event.
entries = st.one_of(
    st.tuples(st.just("event"), st.tuples(events(), formats)),
    st.tuples(st.just("aggregate"), st.lists(st.tuples(events(), formats), min_size=1, max_size=5)),
    st.tuples(st.just("garbage"), st.binary(max_size=60)),
)


def kinesis(data: bytes, n: int) -> dict[str, Any]:
    return {"Data": data, "SequenceNumber": str(n), "PartitionKey": "p",
            "ApproximateArrivalTimestamp": datetime(2024, 1, 1, tzinfo=UTC)}  # fmt: skip


@given(st.lists(st.tuples(entries, st.booleans()), max_size=25))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_cpp_and_python_decode_mixed_batches_alike(batch: list[tuple[Any, bool]]) -> None:
    records: list[Any] = []
    expected: list[tuple[int, ...]] = []
    for n, ((kind, what), as_dict) in enumerate(batch):
        if kind == "event":
            event, fmt = what
            data = event.encode(fmt)
            expected.append((*event.row(), n, 0))
        elif kind == "aggregate":
            data = kpl.aggregate([(e.user_id, e.encode(fmt)) for e, fmt in what])
            expected += [(*e.row(), n, i) for i, (e, _) in enumerate(what)]
        else:
            data = what
        records.append(kinesis(data, n) if as_dict else data)
    out = decoded(records)
    got = list(zip(*(getattr(out, name).tolist() for name in COLUMNS), strict=True))
    if all(kind != "garbage" for (kind, _), _ in batch):
        assert got == expected
        assert out.bad == []
    else:  # garbage may decode by chance; every event encoded above is still there, in order
        assert [row for row in got if row in expected] == expected


@given(events())
@settings(max_examples=200, deadline=None, derandomize=True)
def test_both_formats_decode_to_the_same_row(event: Event) -> None:
    batch = decoded([event.encode("binary"), event.encode("json")])
    assert batch.users.tolist() == [key_of(event.user_id)] * 2
    assert batch.event_keys[0] == batch.event_keys[1]
    assert batch.ts_ms[0] == batch.ts_ms[1]


# ---- ids: escapes decoded before hashing ---------------------------------------------------
@given(ids, st.booleans(), st.sampled_from(["", " ", "\n\t "]))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_user_key_is_key_of_the_unescaped_id(user_id: str, ascii_only: bool, space: str) -> None:
    body = {"event_id": "e", "user_id": user_id, "item_id": "v", "type": "like"}
    data = (space + json.dumps(body, ensure_ascii=ascii_only, separators=(space + ",", ":" + space))
            + space).encode()  # fmt: skip
    assert decoded([data]).users.tolist() == [key_of(user_id)]


@pytest.mark.parametrize(
    ("escaped", "text"),
    [
        (r"caf\u00e9", "café"),
        (r"caf\u00E9", "café"),
        (r"\ud83d\ude00!", "\U0001f600!"),
        (r"a\"b\\c\/d\b\f\n\r\t", 'a"b\\c/d\b\f\n\r\t'),
        (r"\u0000", "\x00"),
        ("日本語", "日本語"),
    ],
)
def test_escapes_and_unicode_hash_as_key_of_does(escaped: str, text: str) -> None:
    data = f'{{"event_id":"e","user_id":"{escaped}","item_id":"v","type":"like"}}'.encode()
    assert decoded([data]).users.tolist() == [key_of(text)]


# ---- every fault, named ------------------------------------------------------------------
def binary(**changes: int) -> bytes:
    fields = dict(magic=0xB1, type=1, flags=7, reserved=0, event_key=11, user_key=22,
                  item_key=33, watch_ms=4000, duration_ms=9000, ts_ms=17)  # fmt: skip
    fields.update(changes)
    return EVENT_FORMAT_BINARY.pack(*fields.values())


def like(extra: str) -> bytes:
    return ('{"event_id":"e","user_id":"u","item_id":"v","type":"like",' + extra + "}").encode()


NAMED_FAULTS = [
    (b"", "undecodable: empty record"),
    (b"hello", "undecodable: starts with 0x68, not 0xb1 (binary), '{' (JSON) or the KPL magic"),
    (kpl.MAGIC + b"\x00" * 20, "aggregated: the MD5 checksum does not match the message"),
    (kpl.aggregate([("k", kpl.aggregate([("k", GOOD)]))]),
     "aggregated: an aggregate inside an aggregate"),
    (binary()[:43], "binary: 43 bytes, expected 44"),
    (binary(type=9), "binary: unknown type code 9"),
    (binary(flags=0x0F), "binary: flags 0x0f set unknown bits"),
    (binary(reserved=3), "binary: reserved byte is 3, expected 0"),
    (binary(event_key=2**64 - 1), "binary: event_key is the reserved key 2^64-1"),
    (binary(user_key=2**64 - 1), "binary: user_key is the reserved key 2^64-1"),
    (binary(item_key=2**64 - 1), "binary: item_key is the reserved key 2^64-1"),
    (binary(flags=6), "binary: watch_ms is 4000 but its flag is clear"),
    (binary(flags=5), "binary: duration_ms is 9000 but its flag is clear"),
    (binary(flags=3), "binary: ts_ms is 17 but its flag is clear"),
    (binary(duration_ms=0), "binary: duration_ms is 0 but its flag is set"),
    (binary(ts_ms=-5), "binary: ts_ms is negative (-5)"),
    (binary(flags=6, watch_ms=0), "binary: a watch without watch_ms"),
    (b'{"event_id":"\xff"}', "not UTF-8"),
    (b'{"event_id":"\xed\xa0\x80"}', "not UTF-8"),  # a surrogate, encoded
    (like('"ts":01'), "invalid JSON"),
    (like('"ts":1,'), "invalid JSON"),
    (like('"ts":NaN'), "invalid JSON"),
    (like(r'"session_id":"\x"'), "invalid JSON"),
    (like('"session_id":"a\tb"'), "invalid JSON"),
    (GOOD + b" x", "invalid JSON"),
    (like('"color":"red"'), 'unknown field "color"'),
    (like(r'"caf\u00e9":1'), 'unknown field "caf?"'),
    (like('"type":"like"'), 'duplicate field "type"'),
    (like(r'"ts":1,"t\u0073":2'), 'duplicate field "ts"'),
    (b'{"event_id":1}', "event_id: expected a string, got an integer"),
    (b'{"event_id":"e","user_id":null}', "user_id: expected a string, got null"),
    (b'{"event_id":"e","user_id":"u","item_id":{"a":1}}',
     "item_id: expected a string, got an object"),
    (b'{"event_id":"e","user_id":"u","item_id":[]}', "item_id: expected a string, got an array"),
    (rb'{"event_id":"e","user_id":"\udc00"}', "user_id: lone surrogate in string"),
    (rb'{"event_id":"e","user_id":"\ud800\u0041"}', "user_id: lone surrogate in string"),
    (b'{"event_id":""}', "event_id: 0 characters, expected 1 to 256"),
    (('{"event_id":"' + "é" * 257 + '"}').encode(), "event_id: 257 characters, expected 1 to 256"),
    (like('"request_id":"' + "r" * 257 + '"'), "request_id: 257 characters, expected at most 256"),
    (like('"session_id":7'), "session_id: expected a string, got an integer"),
    (b'{"type":"love"}', 'type: unknown event type "love"'),
    (b'{"type":true}', "type: expected a string, got a boolean"),
    (like('"watch_ms":1.0'), "watch_ms: expected an integer, got " + FRACTION),
    (like('"watch_ms":1e3'), "watch_ms: expected an integer, got " + FRACTION),
    (like('"watch_ms":false'), "watch_ms: expected an integer, got a boolean"),
    (like('"watch_ms":"5"'), "watch_ms: expected an integer, got a string"),
    (like('"watch_ms":4294967296'), "watch_ms: out of range [0, 2^32)"),
    (like('"watch_ms":-1'), "watch_ms: out of range [0, 2^32)"),
    (like('"duration_ms":0'), "duration_ms: out of range [1, 2^32)"),
    (like('"ts":9223372036854775808'), "ts: out of range [0, 2^63)"),
    (b'{"user_id":"u","item_id":"v","type":"like"}', 'missing field "event_id"'),
    (b'{"event_id":"e","user_id":"u","item_id":"v"}', 'missing field "type"'),
    (b'{"event_id":"e","user_id":"u","item_id":"v","type":"watch"}',
     "watch_ms: required for a watch"),
    (b'{"event_id":"e","user_id":"u","item_id":"v","type":"watch","watch_ms":null}',
     "watch_ms: required for a watch"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "reason"), NAMED_FAULTS)
def test_each_fault_is_named_alike_by_both_decoders(data: bytes, reason: str) -> None:
    assert [_reason(r) for r in reasons(data)] == [reason, reason]


def test_a_syntax_fault_comes_before_a_field_fault() -> None:
    assert [_reason(r) for r in reasons(b'{"zzz":1,"event_id":01}')] == ["invalid JSON"] * 2


def test_what_is_not_a_record_is_a_bad_record_not_an_exception() -> None:
    records: list[Any] = [GOOD, 7, {"Data": "text"}, {"PartitionKey": "p"}, bytearray(GOOD), None]
    batch = decoded(records)
    assert batch.record_index.tolist() == [0]
    assert [b.index for b in batch.bad] == [1, 2, 3, 4, 5]
    assert all(b.reason.startswith("not a record") for b in batch.bad)


def test_one_bad_record_keeps_its_neighbours() -> None:
    events = [encode_json(f"e{i}", f"u{i}", f"v{i}", "like", ts=i) for i in range(5)]
    records = [kinesis(data, i) for i, data in enumerate(events)]
    records[2] = kinesis(like('"ts":-1'), 2)
    batch = decoded(records)
    assert batch.record_index.tolist() == [0, 1, 3, 4]
    assert batch.users.tolist() == [key_of(f"u{i}") for i in (0, 1, 3, 4)]
    assert batch.ts_ms.tolist() == [0, 1, 3, 4]
    assert batch.bad == [BadRecord(2, 0, "ts: out of range [0, 2^63)")]


def test_a_bad_user_record_keeps_the_rest_of_its_aggregate() -> None:
    blob = kpl.aggregate([("k", GOOD), ("k", b"{}"), ("k", encode_binary("e", "u", "v", "skip"))])
    batch = decoded([GOOD, blob, GOOD])
    assert batch.record_index.tolist() == [0, 1, 1, 2]
    assert batch.sub_sequence.tolist() == [0, 0, 2, 0]
    assert batch.bad == [BadRecord(1, 1, 'missing field "event_id"')]


def test_a_damaged_aggregate_is_bad_whole() -> None:
    blob = bytearray(kpl.aggregate([("k", GOOD), ("k", GOOD)]))
    blob[-1] ^= 1
    batch = decoded([GOOD, bytes(blob)])
    assert batch.record_index.tolist() == [0]
    assert batch.bad[0].index == 1
    assert batch.bad[0].reason.startswith("aggregated: ")


def test_an_empty_batch_is_empty() -> None:
    batch = decoded([])
    assert len(batch) == 0
    assert batch.bad == []
    assert batch.users.dtype == np.uint64
    assert batch.record_index.dtype == np.uint32


# ---- damage never crashes ------------------------------------------------------------------
def test_every_truncation_and_bit_flip_of_a_binary_record_decodes_or_is_bad() -> None:
    whole = encode_binary("e1", "u1", "v1", "watch", watch_ms=4000, duration_ms=9000, ts=17)
    damaged = [whole[:n] for n in range(len(whole))]
    for at in range(len(whole)):
        for bit in range(8):
            flipped = bytearray(whole)
            flipped[at] ^= 1 << bit
            damaged.append(bytes(flipped))
    batch = decoded(damaged)
    assert len(batch) + len(batch.bad) == len(damaged)
    assert {b.index for b in batch.bad}.isdisjoint(batch.record_index.tolist())


def test_every_truncation_and_bit_flip_of_a_json_record_decodes_or_is_bad() -> None:
    whole = like(r'"ts":17,"session_id":"caf\u00e9 \ud83d\ude00"')
    damaged = [whole[:n] for n in range(len(whole))]
    for at in range(len(whole)):
        for bit in range(8):
            flipped = bytearray(whole)
            flipped[at] ^= 1 << bit
            damaged.append(bytes(flipped))
    batch = decoded(damaged)
    assert len(batch) + len(batch.bad) == len(damaged)


@given(st.binary(max_size=80))
@settings(max_examples=500, deadline=None, derandomize=True)
def test_any_bytes_decode_alike_or_are_bad_alike(data: bytes) -> None:
    decoded([data, b"{" + data, b'{"event_id":"e",' + data])


@given(events(), st.data())
@settings(max_examples=300, deadline=None, derandomize=True)
def test_edited_json_decodes_alike(event: Event, data: st.DataObject) -> None:
    text = bytearray(event.encode("json"))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text) - 1))
        edit = data.draw(st.sampled_from(["delete", "replace", "insert"]))
        byte = data.draw(st.sampled_from(b'{}[]",:0-1.eE\\ u\xc3\xa9\xff\x00tnf'))
        if edit == "delete":
            del text[at]
        elif edit == "replace":
            text[at] = byte
        else:
            text.insert(at, byte)
    decoded([bytes(text)])
