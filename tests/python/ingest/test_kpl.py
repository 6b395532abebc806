"""recserve.ingest.kpl: KPL aggregated records, read whole or refused whole."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recserve.ingest.kpl import MAGIC, KplError, UserRecord, aggregate, deaggregate, is_aggregated

# An aggregate of ("partition_key", b"data") as another implementation of the format (the
# ExKpl aggregator's documentation) writes it: our reader and writer agree with it byte for byte.
EXKPL = bytes(
    [243, 137, 154, 194, 10, 13, *b"partition_key", 26, 8, 8, 0, 26, 4, *b"data",
     208, 54, 153, 218, 90, 34, 47, 163, 33, 8, 173, 27, 217, 85, 161, 78]
)  # fmt: skip


def test_reads_and_writes_the_format_as_another_implementation_does() -> None:
    assert deaggregate(EXKPL) == [UserRecord("partition_key", None, b"data", 0)]
    assert aggregate([("partition_key", b"data")]) == EXKPL


records = st.lists(
    st.tuples(
        st.text(min_size=1, max_size=20),
        st.binary(max_size=64),
        st.one_of(st.none(), st.text(alphabet="0123456789", min_size=1, max_size=39)),
    ),
    min_size=1,
    max_size=30,
)


@given(records)
@settings(max_examples=200, deadline=None)
def test_round_trip_keeps_order_keys_and_data(batch: list[tuple[str, bytes, str | None]]) -> None:
    out = deaggregate(aggregate(batch))
    assert [(r.partition_key, r.data, r.explicit_hash_key) for r in out] == batch
    assert [r.sub_sequence for r in out] == list(range(len(batch)))


def test_every_truncation_and_every_bit_flip_is_refused() -> None:
    blob = aggregate([("u1", b'{"type": "watch"}'), ("u2", b"\x00\x01"), ("u1", b"x", "123")])
    for length in range(len(blob)):
        with pytest.raises(KplError):
            deaggregate(blob[:length])
    for at in range(len(blob)):
        for bit in range(8):
            damaged = bytearray(blob)
            damaged[at] ^= 1 << bit
            with pytest.raises(KplError):
                deaggregate(bytes(damaged))


def test_a_plain_record_is_not_aggregated() -> None:
    assert not is_aggregated(b'{"event_id": "e1"}')
    assert not is_aggregated(MAGIC + b"short")
    assert is_aggregated(EXKPL)


def _sealed(message: bytes) -> bytes:
    return MAGIC + message + hashlib.md5(message).digest()


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (b"\x1a\x02\x08\x00", "no data"),  # a record without data
        (b"\x1a\x03\x1a\x01x", "no partition_key_index"),
        (b"\x0a\x01k\x1a\x05\x08\x03\x1a\x01x", "partition key index 3 of 1"),
        (b"\x0a\x01k\x1a\x07\x08\x00\x10\x01\x1a\x01x", "explicit hash key index 1 of 0"),
        (b"\x0a\x05k", "claims 5 bytes"),
        (b"\x0a\x02\xff\xfe\x1a\x05\x08\x00\x1a\x01x", "not UTF-8"),
        (b"\x0b", "wire type 3"),
        (b"\x08" + b"\xff" * 11, "longer than 10 bytes"),
    ],
)
def test_a_well_sealed_but_malformed_message_names_its_fault(message: bytes, error: str) -> None:
    with pytest.raises(KplError, match=error):
        deaggregate(_sealed(message))


@given(st.binary(max_size=200))
@settings(max_examples=500, deadline=None)
def test_any_sealed_bytes_decode_or_raise_kpl_error(message: bytes) -> None:
    try:
        for record in deaggregate(_sealed(message)):
            assert isinstance(record.data, bytes)
    except KplError:
        pass
