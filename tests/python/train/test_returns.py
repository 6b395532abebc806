"""recserve.train.labels: the return head on a hand-made log (sessions, returns, censoring)."""

from __future__ import annotations

import pytest

from recserve.train.labels import HEADS, join
from recserve.train.log import Event, Impression, Record

RETURN = HEADS.index("return")
HOUR = 3600.0


def _viewed(ts: float, request: str, user: str = "u", item: int = 1) -> list[Record]:
    return [
        Impression(ts, request, user, item, 0),
        Event(ts + 1.0, f"{request}-w", user, item, "watch", request, 5000, 10000),
    ]


def _returns(records: list[Record], **kwargs: float) -> tuple[list[float], list[bool]]:
    joined = join(records, session_timeout_s=1800.0, return_window_s=24 * HOUR, **kwargs)
    return joined.labels[:, RETURN].tolist(), joined.return_known.tolist()


def test_a_return_is_a_new_session_within_the_window_after_the_session_ends() -> None:
    records = [
        *_viewed(0.0, "a"),  # session 1: 0 .. 1,201 s
        *_viewed(1200.0, "b"),  # 1,199 s after the last record: the same session
        *_viewed(1201.0 + 20 * HOUR, "c"),  # 20 h after session 1 ended: a return
        *_viewed(1202.0 + 50 * HOUR, "d"),  # 30 h after session 2: no return within a day
        *_viewed(1203.0 + 80 * HOUR, "e"),  # 30 h after session 3
        *_viewed(1204.0 + 120 * HOUR, "z"),  # the log's end, 40 h after session 4
    ]
    returned, known = _returns(records)
    assert returned == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert known == [True, True, True, True, True, False]  # z's day runs past the log's end


def test_the_window_counts_from_the_sessions_last_record_not_the_impression() -> None:
    # Session 1 runs 0 .. 1,000 s by activity every 999 s (under the 1,800 s timeout); the
    # impression at 0 returns 24 h after the session's end, 24 h + 1,000 s after it was served.
    records = [
        *_viewed(0.0, "a"),
        Event(999.0, "x1", "u", 2, "like"),
        *_viewed(1000.0 - 1.0, "b"),
        *_viewed(1000.0 + 24 * HOUR, "c"),
        *_viewed(1000.0 + 80 * HOUR, "end"),
    ]
    returned, known = _returns(records)
    assert returned[:2] == [1.0, 1.0]
    assert known[:3] == [True, True, True]


def test_other_users_do_not_make_a_return_and_unattributed_events_do() -> None:
    records = [
        *_viewed(0.0, "a"),
        *_viewed(5 * HOUR, "other", user="v"),  # someone else's session
        Event(6 * HOUR, "x", "u", 3, "like"),  # no impression joins it: still the user back
        *_viewed(60 * HOUR, "end", user="v"),
    ]
    returned, known = _returns(records)
    assert returned == [1.0, 0.0, 0.0]  # u came back at 6 h; v's next session is 55 h later
    assert known == [True, True, False]


def test_censored_at_the_end_of_the_log_even_when_a_return_was_seen() -> None:
    records = [*_viewed(0.0, "a"), *_viewed(10 * HOUR, "b")]  # the log ends 10 h in
    returned, known = _returns(records)
    assert known == [False, False]  # no session's day has passed: both unknown, not 0
    assert returned == [1.0, 0.0]  # what was seen, which the trainer leaves out


def test_served_not_viewed_impressions_have_no_return_label() -> None:
    records: list[Record] = [
        Impression(0.0, "a", "u", 1, 0),
        Impression(0.0, "a", "u", 2, 1),  # never reached
        Event(1.0, "w", "u", 1, "watch", "a", 5000, 10000),
        *_viewed(5 * HOUR, "b"),
        *_viewed(90 * HOUR, "end"),
    ]
    joined = join(records)
    assert joined.viewed.tolist() == [True, False, True, True]
    assert joined.labels[:, RETURN].tolist() == [1.0, 0.0, 0.0, 0.0]


def test_the_window_must_outlast_the_session_timeout() -> None:
    with pytest.raises(ValueError, match="must exceed session_timeout_s"):
        join([], session_timeout_s=1800.0, return_window_s=1800.0)
