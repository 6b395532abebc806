"""recserve.service.clock: a service runs on the wall clock; with ``clock = "events"`` the engine
lives at the time its inputs say, so a simulation or replay repeats exactly."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from recserve.catalog import Item
from recserve.ingest.event_row import EventRow
from recserve.service.clock import EventClock, WallClock
from recserve.service.engine import Engine
from recserve.service.settings import Settings

T0 = 1_000_000_000_000  # 2001: decades before any wall clock these tests run on
DIMS = 8


@contextmanager
def engine(tmp_path: Path, **settings: object) -> Iterator[Engine]:
    e = Engine(Settings(data_dir=tmp_path, dims=DIMS, impression_log=False, **settings))
    e.start()
    try:
        yield e
    finally:
        e.close()


def load(e: Engine, n: int = 300) -> None:
    rng = np.random.default_rng(7)
    items = [Item(f"v{i}", f"c{i % 40}", 30_000, created_at=T0 + i) for i in range(n)]
    e.upsert_items(items, rng.standard_normal((n, DIMS)).astype(np.float32), amplify=False)


def swipe(e: Engine, user: str, item: str, ts: int, n: int) -> None:
    e.post_events([EventRow(f"{user}-{n}", user, item, "watch", 30_000, 30_000, ts)])


def test_the_event_clock_is_the_newest_timestamp_it_has_seen() -> None:
    clock = EventClock()
    assert clock.now_ms() == 0
    clock.observe(T0 + 5)
    clock.observe(T0)  # an event arriving late does not turn time back
    assert clock.now_ms() == T0 + 5


def test_the_wall_clock_ignores_timestamps() -> None:
    clock = WallClock()
    clock.observe(T0)
    assert abs(clock.now_ms() - time.time() * 1000) < 60_000


def test_on_the_events_clock_a_session_of_long_ago_is_still_active(tmp_path: Path) -> None:
    with engine(tmp_path, clock="events") as e:
        load(e)
        amplification = e.item("v299")["amplification"]
        assert amplification["history"][0]["ts_ms"] == T0 + 299  # the newest created_at
        swipe(e, "u1", "v3", T0 + 60_000, 0)
        assert e.user("u1")["session"] == {
            "active": True,
            "started_at": T0 + 60_000,
            "last_event_at": T0 + 60_000,
        }


def test_on_the_wall_clock_a_session_of_long_ago_has_timed_out(tmp_path: Path) -> None:
    with engine(tmp_path) as e:
        load(e)
        swipe(e, "u1", "v3", T0 + 60_000, 0)
        assert e.user("u1")["session"]["active"] is False


def test_the_same_inputs_give_the_same_feeds_however_fast_they_arrive(tmp_path: Path) -> None:
    pages = []
    for run, pause_s in enumerate((0.0, 0.05)):
        with engine(tmp_path / str(run), clock="events", index_threads=1) as e:
            load(e)
            served = []
            for n in range(12):
                page = e.feed("u1", 5)
                served.append([(i["item_id"], i["score"]) for i in page["items"]])
                swipe(e, "u1", page["items"][0]["item_id"], T0 + 10_000 * (n + 1), n)
                time.sleep(pause_s)
            pages.append(served)
    assert pages[0] == pages[1]


def test_on_the_events_clock_a_ts_beyond_the_wall_clock_is_refused_not_adopted(
    tmp_path: Path,
) -> None:
    with engine(tmp_path, clock="events") as e:
        load(e)
        swipe(e, "u1", "v3", T0 + 3 * 86_400_000, 0)  # a simulation may skip days ahead
        assert e.clock.now_ms() == T0 + 3 * 86_400_000
        wall = time.time_ns() // 1_000_000
        with pytest.raises(ValueError, match=r"^events\[0\]\.ts: more than 300 s ahead"):
            swipe(e, "u1", "v4", wall + 86_400_000, 1)  # a day beyond the wall clock
        assert e.clock.now_ms() == T0 + 3 * 86_400_000  # not adopted
        assert e.user("u1")["events_applied"] == 1
        swipe(e, "u1", "v4", wall + 60_000, 2)  # within max_clock_skew_s of the wall clock
        assert e.clock.now_ms() == wall + 60_000
