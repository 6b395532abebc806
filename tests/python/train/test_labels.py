"""recserve.train.labels: joining impressions with the events that followed, and labels."""

from __future__ import annotations

import numpy as np
import pytest

from recserve.train.labels import HEADS, event_outcomes, join
from recserve.train.log import Event, Impression, Record


def _imp(ts: float, request: str, item: int, user: str = "u", position: int = 0) -> Impression:
    return Impression(ts, request, user, item, position)


def _labels(records: list[Record], **kwargs: float) -> dict[str, list[float]]:
    joined = join(records, **kwargs)  # type: ignore[arg-type]
    return {head: joined.labels[:, k].tolist() for k, head in enumerate(HEADS)}


def test_labels_per_head_follow_their_definitions() -> None:
    records: list[Record] = [
        _imp(0.0, "r", 1, position=0),
        _imp(0.0, "r", 2, position=1),
        _imp(0.0, "r", 3, position=2),
        _imp(0.0, "r", 4, position=3),
        Event(1.0, "a", "u", 1, "watch", "r", watch_ms=9500, duration_ms=10000),
        Event(2.0, "b", "u", 1, "replay", "r"),
        Event(2.5, "c", "u", 1, "share", "r"),
        Event(1.0, "d", "u", 2, "watch", "r", watch_ms=2000, duration_ms=30000),
        Event(1.5, "e", "u", 3, "watch", "r", watch_ms=15000, duration_ms=20000),
        Event(1.6, "f", "u", 3, "like", "r"),
        Event(1.7, "g", "u", 3, "comment", "r"),
        Event(1.8, "h", "u", 3, "follow", "r"),
        Event(1.0, "i", "u", 4, "skip", "r"),
    ]
    labels = _labels(records)
    assert labels["complete"] == [1, 0, 0, 0]
    assert labels["replay"] == [1, 0, 0, 0]
    assert labels["share"] == [1, 0, 0, 0]
    assert labels["like"] == labels["comment"] == labels["follow"] == [0, 0, 1, 0]
    assert labels["skip"] == [0, 1, 0, 1]  # a 2 s watch and a skip event are fast skips
    np.testing.assert_allclose(labels["watch_frac"], [0.95, 2 / 30, 0.75, 0.0], rtol=1e-6)


def test_watch_frac_is_capped_at_one_and_takes_the_longest_watch() -> None:
    records: list[Record] = [
        _imp(0.0, "r", 1),
        Event(1.0, "a", "u", 1, "watch", "r", watch_ms=25000, duration_ms=10000),
        Event(2.0, "b", "u", 1, "watch", "r", watch_ms=4000, duration_ms=10000),
    ]
    labels = _labels(records)
    assert labels["watch_frac"] == [1.0]
    assert labels["complete"] == [1.0]


def test_a_served_impression_with_no_event_is_not_viewed_and_not_a_0_ms_view() -> None:
    joined = join([_imp(0.0, "r", 1), _imp(0.0, "r", 2, position=1)])
    assert joined.viewed.tolist() == [False, False]
    assert joined.labels.tolist() == [[0.0] * len(HEADS)] * 2  # no fast skip either


def test_a_viewed_impression_with_no_watch_event_is_a_fast_skip() -> None:
    records: list[Record] = [
        _imp(0.0, "r", 1),
        _imp(0.0, "r", 2, position=1),
        Event(1.0, "i", "u", 1, "impression", "r"),  # the client says the user saw it
        Event(2.0, "l", "u", 2, "like", "r"),
    ]
    joined = join(records)
    assert joined.viewed.tolist() == [True, True]
    labels = {head: joined.labels[:, k].tolist() for k, head in enumerate(HEADS)}
    assert labels["skip"] == [1.0, 1.0]  # watched for 0 ms
    assert labels["watch_frac"] == [0.0, 0.0]
    assert labels["like"] == [0.0, 1.0]


def test_only_the_users_own_event_makes_an_impression_viewed() -> None:
    records: list[Record] = [
        _imp(0.0, "r", 1),
        Event(1.0, "a", "someone-else", 1, "watch", watch_ms=9000, duration_ms=10000),
        Event(5000.0, "b", "u", 1, "like"),  # outside the window: unattributed
    ]
    assert join(records, window_s=3600.0).viewed.tolist() == [False]


def test_event_without_request_id_joins_the_latest_impression_within_the_window() -> None:
    records: list[Record] = [
        _imp(0.0, "r1", 1),
        _imp(100.0, "r2", 1),
        Event(150.0, "a", "u", 1, "like"),  # no request id: the impression at 100
        Event(5000.0, "b", "u", 1, "share"),  # 4,900 s later: outside a 3,600 s window
    ]
    joined = join(records, window_s=3600.0)
    assert joined.impression_of.tolist() == [0, 1, 1, -1]
    assert joined.labels[:, HEADS.index("like")].tolist() == [0, 1]
    assert joined.labels[:, HEADS.index("share")].tolist() == [0, 0]
    assert joined.unattributed == 1


def test_request_id_wins_over_the_window_and_must_match_the_user() -> None:
    records: list[Record] = [
        _imp(0.0, "r1", 1),
        _imp(10.0, "r2", 1),
        Event(20.0, "a", "u", 1, "like", "r1"),  # names the older request
        Event(21.0, "b", "someone-else", 1, "share", "r1"),  # another user: not r1's
    ]
    joined = join(records)
    assert joined.impression_of.tolist() == [0, 1, 0, -1]


def test_duplicate_event_ids_are_dropped() -> None:
    records: list[Record] = [
        _imp(0.0, "r", 1),
        Event(1.0, "a", "u", 1, "like", "r"),
        Event(1.0, "a", "u", 1, "like", "r"),
    ]
    joined = join(records)
    assert joined.duplicates == 1
    assert len(joined.timeline) == 2


def test_records_are_joined_in_time_order_whatever_the_append_order() -> None:
    records: list[Record] = [
        Event(5.0, "a", "u", 1, "like"),
        _imp(1.0, "r", 1),
    ]
    joined = join(records)
    assert [type(r).__name__ for r in joined.timeline] == ["Impression", "Event"]
    assert joined.labels[0, HEADS.index("like")] == 1


@pytest.mark.parametrize(
    ("event", "outcomes"),
    [
        (Event(0, "e", "u", 1, "watch", watch_ms=9000, duration_ms=10000), ("complete",)),
        (Event(0, "e", "u", 1, "watch", watch_ms=5000, duration_ms=10000), ()),
        (Event(0, "e", "u", 1, "watch", watch_ms=2999, duration_ms=10000), ("skip",)),
        (Event(0, "e", "u", 1, "skip"), ("skip",)),
        (Event(0, "e", "u", 1, "like"), ("like",)),
        (Event(0, "e", "u", 1, "not_interested"), ()),
    ],
)
def test_event_outcomes(event: Event, outcomes: tuple[str, ...]) -> None:
    assert event_outcomes(event) == outcomes
