"""recserve.service.event_batch: a batch is checked whole before anything of it is applied,
the error naming the event and field; watches without a duration take the catalogue's; what
counts for the experiments' arms."""

from __future__ import annotations

import numpy as np
import pytest

from recserve.catalog import Catalog, Item
from recserve.ids import key_of
from recserve.ingest.event_row import EventRow
from recserve.profiles import EVENT_TYPES
from recserve.service.event_batch import check_events, outcome_of

DIMS = 4
LATEST = 2_000_000_000_000


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    c = Catalog(DIMS)
    c.upsert([Item("a", "c1", 30_000)], np.ones((1, DIMS), dtype=np.float32))
    return c


def test_columns_of_a_valid_batch(catalog: Catalog) -> None:
    rows = [
        EventRow("e1", "u1", "a", "watch", watch_ms=12_000),  # duration: the catalogue's
        EventRow("e2", "u1", "b", "watch", watch_ms=5, duration_ms=10, ts=7),
        EventRow("e3", "u2", "a", "like"),
    ]
    checked = check_events(rows, catalog, LATEST, 5.0)
    assert checked.types.tolist() == [EVENT_TYPES.index(r.type) for r in rows]
    assert checked.watch_ms.tolist() == [12_000, 5, 0]
    assert checked.duration_ms.tolist() == [30_000, 10, 0]
    events = checked.events(now_ms=99)
    assert events.ts_ms.tolist() == [99, 7, 99]  # no ts: now
    assert events.users.tolist() == [key_of("u1"), key_of("u1"), key_of("u2")]
    assert events.items.tolist() == [key_of("a"), key_of("b"), key_of("a")]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (EventRow("e", "u", "a", "like", ts=LATEST + 1), r"events\[1\]\.ts: more than 5 s ahead"),
        (EventRow("e", "u", "a", "watch"), r"events\[1\]\.watch_ms: required for a watch"),
        (
            EventRow("e", "u", "zz", "watch", watch_ms=1),
            r"events\[1\]\.duration_ms: required for a watch of an item not in the catalogue",
        ),
    ],
)
def test_a_bad_event_is_named(catalog: Catalog, bad: EventRow, message: str) -> None:
    good = EventRow("e0", "u", "a", "like")
    with pytest.raises(ValueError, match=message):
        check_events([good, bad], catalog, LATEST, 5.0)


@pytest.mark.parametrize(
    ("event_type", "watch_ms", "duration_ms", "outcome"),
    [
        ("impression", 0, 0, "impression"),
        ("like", 0, 0, "like"),
        ("watch", 800, 1000, "complete"),
        ("watch", 799, 1000, None),
        ("watch", 800, 0, None),
        ("skip", 0, 1000, None),
    ],
)
def test_outcomes_for_the_arms(
    event_type: str, watch_ms: int, duration_ms: int, outcome: str | None
) -> None:
    assert outcome_of(event_type, watch_ms, duration_ms, 0.8) == outcome
