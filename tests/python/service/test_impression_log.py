"""recserve.service.impression_log: records reach the log's files on flush, none while it is
closed, and an erased user's records leave both the waiting list and the files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recserve.feed import Served
from recserve.ingest.event_row import EventRow
from recserve.profiles import Events
from recserve.service.impression_log import (
    ImpressionLogWriter,
    event_records,
    impression_records,
)
from recserve.train.log import Event, Impression, iter_records


def served(*keys: int) -> list[Served]:
    return [Served(k, f"i{k}", 1.0, "test") for k in keys]


def test_records_reach_the_files_on_flush(tmp_path: Path) -> None:
    log = ImpressionLogWriter(tmp_path / "impressions")
    log.open()
    log.append(impression_records(1.5, "r1", "u1", served(7, 8), "m1", "exp:a"))
    assert list(iter_records(log.directory)) == []  # waiting in memory
    log.flush()
    assert list(iter_records(log.directory)) == [
        Impression(1.5, "r1", "u1", 7, 0, "m1", "exp:a"),
        Impression(1.5, "r1", "u1", 8, 1, "m1", "exp:a"),
    ]
    log.close()


def test_a_closed_log_takes_nothing(tmp_path: Path) -> None:
    log = ImpressionLogWriter(tmp_path / "impressions")
    assert not log.is_open
    log.append(impression_records(1.0, "r1", "u1", served(7), "m1", None))
    log.open()
    log.close()
    log.append(impression_records(2.0, "r2", "u1", served(7), "m1", None))
    log.flush()
    assert list(iter_records(log.directory)) == []


def test_an_erased_user_leaves_the_waiting_records_and_the_files(tmp_path: Path) -> None:
    log = ImpressionLogWriter(tmp_path / "impressions")
    log.open()
    log.append(impression_records(1.0, "r1", "gone", served(1), "m1", None))
    log.append(impression_records(1.0, "r2", "kept", served(2), "m1", None))
    log.flush()
    log.append(impression_records(2.0, "r3", "gone", served(3), "m1", None))
    log.drop_user("gone")
    log.append(impression_records(2.0, "r4", "gone", served(4), "m1", None))
    log.erase({"gone"})
    log.append(impression_records(3.0, "r5", "kept", served(5), "m1", None))
    log.close()
    assert [(r.user, r.item) for r in iter_records(log.directory)] == [("kept", 2), ("kept", 5)]


def test_event_records_keep_a_clients_impression_event_which_says_the_item_was_viewed() -> None:
    rows = [
        EventRow("e1", "u1", "a", "impression"),
        EventRow("e2", "u1", "a", "watch", watch_ms=900, request_id="r1"),
    ]
    events = Events.of(
        users=np.array([1, 1], dtype=np.uint64),
        items=np.array([10, 10], dtype=np.uint64),
        types=np.array([0, 1], dtype=np.uint8),
        watch_ms=np.array([0, 900], dtype=np.uint32),
        duration_ms=np.array([0, 1000], dtype=np.uint32),
        ts_ms=[2000, 2500],
        seq=np.ones(2, dtype=np.uint64),
        event_keys=np.array([1, 2], dtype=np.uint64),
    )
    assert event_records(rows, events) == [
        Event(2.0, "e1", "u1", 10, "impression"),
        Event(2.5, "e2", "u1", 10, "watch", request_id="r1", watch_ms=900, duration_ms=1000),
    ]
