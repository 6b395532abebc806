"""recserve.service.catalogue_records: each record reads back as it was written, older records
without ``amplify`` read as amplified, and a kind not of the module is refused."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from recserve.catalog import Item
from recserve.service import catalogue_records as records
from recserve.store.embedded import EXTENSION_KINDS


def test_items_read_back_with_their_vectors() -> None:
    items = [Item("a", "c1", 1000, ("x",), 5, "k/a"), Item("b", "c2", 2000)]
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    for amplify in (True, False):
        body = records.items_record(7, items, vectors, amplify=amplify)
        record = records.decode(records.ITEMS, body, dims=3)
        assert isinstance(record, records.ItemsRecord)
        assert record.ts_ms == 7
        assert record.items == items
        assert record.amplify is amplify
        np.testing.assert_array_equal(record.vectors, vectors)


def test_a_review_decision_reads_back_with_a_key_beyond_doubles() -> None:
    key = 2**64 - 3  # keys travel as strings: a double would round it
    body = records.review_record(9, key, "reject", "spam")
    assert records.decode(records.REVIEW, body, dims=3) == records.ReviewRecord(
        9, key, "reject", "spam"
    )
    assert records.REVIEW == EXTENSION_KINDS + 3


def test_an_items_record_without_amplify_amplified() -> None:
    header = json.dumps({"ts_ms": 1, "items": [Item("a", "c", 10).to_row()]}).encode()
    body = struct.pack("<I", len(header)) + header + np.ones(2, dtype=np.float32).tobytes()
    record = records.decode(records.ITEMS, body, dims=2)
    assert isinstance(record, records.ItemsRecord)
    assert record.amplify


def test_amplify_is_written_only_when_false() -> None:
    vectors = np.zeros((1, 1), dtype=np.float32)
    assert b"amplify" not in records.items_record(1, [Item("a", "c", 10)], vectors, amplify=True)


def test_take_downs_and_preferences_read_back() -> None:
    big = 2**64 - 2  # keys travel as strings: no reader rounds them through a double
    assert records.decode(
        records.TAKE_DOWN, records.take_down_record([big, 3]), dims=4
    ) == records.TakeDownRecord([big, 3])
    prefs = records.user_prefs_record(big, ("cats", "cars"), None)
    assert records.decode(records.USER_PREFS, prefs, dims=4) == records.UserPrefsRecord(
        big, ["cats", "cars"], None
    )


def test_the_kinds_are_the_store_extension_s() -> None:
    kinds = (records.ITEMS, records.TAKE_DOWN, records.USER_PREFS)
    assert kinds == (EXTENSION_KINDS, EXTENSION_KINDS + 1, EXTENSION_KINDS + 2)


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown record kind 40"):
        records.decode(40, records.take_down_record([1]), dims=4)
