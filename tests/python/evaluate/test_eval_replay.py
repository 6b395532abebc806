"""recserve.evaluate.replay: chronological replay, metrics and the three policies."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from recserve.catalog import Item
from recserve.evaluate.peer_replay import Popularity
from recserve.evaluate.replay import (
    Catalogue,
    ReplayError,
    Score,
    engaged,
    read_events,
    read_items,
    replay,
    write_jsonl,
)
from recserve.ingest.event_row import EventRow
from recserve.profiles import UpdateRule

DIMS = 8


def catalogue(n: int = 60, seed: int = 0) -> Catalogue:
    """Items in 4 topics (clustered vectors), each item its own creator."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((4, DIMS))
    topics = np.arange(n) % 4
    vectors = centres[topics] + 0.3 * rng.standard_normal((n, DIMS))
    items = [Item(f"v{i}", f"c{i}", 20_000, (f"t{topics[i]}",)) for i in range(n)]
    return Catalogue(items, vectors.astype(np.float32))


def log(cat: Catalogue, users: int = 12, per_user: int = 20, seed: int = 1) -> list[EventRow]:
    """Each user watches items of their topic in full (engaged) and skips others."""
    rng = np.random.default_rng(seed)
    rows: list[EventRow] = []
    n = len(cat.items)
    for u in range(users):
        topic = u % 4
        start = 1_000_000 + int(rng.integers(0, 500_000))
        order = rng.permutation(n)[:per_user]
        for j, i in enumerate(order.tolist()):
            full = i % 4 == topic
            rows.append(
                EventRow(
                    event_id=f"e{u}-{j}",
                    user_id=f"u{u}",
                    item_id=f"v{i}",
                    type="watch",
                    watch_ms=20_000 if full else 1_000,
                    duration_ms=20_000,
                    ts=start + 60_000 * j,
                )
            )
    return rows


def test_ndcg_and_hit_rate_are_exact_on_a_hand_made_case() -> None:
    score = Score(k=3)
    score.add(["a", "b", "c"], "a")  # rank 0: 1
    score.add(["a", "b", "c"], "c")  # rank 2: 1 / log2(4) = 0.5
    score.add(["a", "b", "c", "d"], "d")  # beyond k: a miss
    score.add([], "x")  # an empty page: a miss
    assert score.evaluated == 4
    assert score.hits == 2
    assert score.hr == 0.5
    assert score.ndcg == pytest.approx((1.0 + 0.5) / 4)
    assert score.to_dict() == {"hr@3": 0.5, "ndcg@3": pytest.approx(0.375), "hits": 2}
    assert math.isclose(Score(k=10).ndcg, 0.0)


def test_engagement_is_a_completed_watch_or_an_explicit_action() -> None:
    rule = UpdateRule()  # completion_threshold 0.9
    watch = EventRow("e", "u", "v", "watch", watch_ms=18_000, duration_ms=20_000, ts=1)
    assert engaged(watch, 0, rule)
    assert not engaged(EventRow("e", "u", "v", "watch", 17_999, 20_000, 1), 0, rule)
    assert engaged(EventRow("e", "u", "v", "watch", 9_000, None, 1), 10_000, rule)  # item's
    assert engaged(EventRow("e", "u", "v", "like", ts=1), 0, rule)
    assert not engaged(EventRow("e", "u", "v", "skip", ts=1), 0, rule)
    assert not engaged(EventRow("e", "u", "v", "impression", ts=1), 0, rule)


def test_replay_scores_every_engagement_after_the_split() -> None:
    cat = catalogue()
    events = log(cat)
    result = replay(events, cat, split=0.5)
    ts = [e.ts or 0 for e in events]
    split = min(ts) + math.ceil(0.5 * (max(ts) - min(ts)))
    expected = sum(1 for e in events if (e.ts or 0) >= split and e.watch_ms == 20_000)
    assert result.split_ms == split
    assert result.candidates == expected
    assert all(result.policies[p].evaluated == expected for p in ("realtime", "frozen"))
    assert result.policies["popularity"].evaluated == expected
    assert result.seen_dropped == 0
    assert result.events == len(events)


def test_replay_is_deterministic() -> None:
    cat = catalogue()
    events = log(cat)
    a = replay(events, cat, split=0.5, whole_run=True).to_dict()
    b = replay(events, cat, split=0.5, whole_run=True).to_dict()
    for d in (a, b):  # how long each took is the one thing that may differ
        d.pop("seconds")
        d["settings"]["peers"]["validation"].pop("seconds")
    assert a == b


def test_realtime_learns_the_topic_the_frozen_engine_never_saw() -> None:
    # Users appear only after the split: frozen knows nothing of them, realtime learns.
    cat = catalogue()
    early = log(cat, users=4, per_user=10, seed=3)
    late = [
        EventRow(e.event_id + "L", e.user_id + "L", e.item_id, e.type, e.watch_ms, e.duration_ms,
                 (e.ts or 0) + 10_000_000)
        for e in log(cat, users=8, per_user=30, seed=4)
    ]  # fmt: skip
    result = replay(early + late, cat, split=0.5)
    assert result.policies["realtime"].hits > result.policies["frozen"].hits


def test_frozen_applies_nothing_after_the_split() -> None:
    cat = catalogue()
    events = log(cat)
    # Move every event after the split to the far future: for the frozen engine, which
    # applies nothing after the split, later events cannot change any page; realtime's can.
    base = replay(events, cat, split=0.5)
    ts = [e.ts or 0 for e in events]
    split = base.split_ms
    extra = [
        EventRow(f"x{i}", e.user_id, e.item_id, "not_interested", ts=e.ts)
        for i, e in enumerate(events)
        if (e.ts or 0) >= split and e.watch_ms != 20_000
    ]
    assert extra, "the synthetic log has skips after the split"
    changed = replay(events + extra, cat, split=(split - min(ts)) / (max(ts) - min(ts)))
    assert changed.split_ms == split
    assert changed.policies["frozen"].to_dict() == base.policies["frozen"].to_dict()


def test_seen_items_are_never_recommended(monkeypatch: pytest.MonkeyPatch) -> None:
    import recserve.evaluate.replay as module

    cat = catalogue(n=30)
    events = log(cat, users=6, per_user=25)
    pages: list[tuple[str, list[str], set[str]]] = []
    seen: dict[str, set[str]] = {}
    real_page = module._EnginePolicy.page
    real_pop = Popularity.page

    def engine_page(
        self: module._EnginePolicy, user: str, k: int, now: int, request: int
    ) -> list[str]:
        page = real_page(self, user, k, now, request)
        pages.append((user, page, set(seen.get(user, set()))))
        return page

    def popularity_page(self: Popularity, user_seen: set[str], k: int) -> list[str]:
        page = real_pop(self, user_seen, k)
        assert not set(page) & user_seen
        return page

    by_time = sorted(events, key=lambda e: e.ts or 0)
    monkeypatch.setattr(module._EnginePolicy, "page", engine_page)
    monkeypatch.setattr(Popularity, "page", popularity_page)
    result = replay(by_time, cat, split=0.3)
    # Rebuild who had seen what at each page from the log itself.
    seen_at: list[set[str]] = []
    met: dict[str, set[str]] = {}
    first: set[tuple[str, str]] = set()
    for e in by_time:
        if (
            (e.user_id, e.item_id) not in first
            and e.watch_ms == 20_000
            and (e.ts or 0) >= result.split_ms
        ):
            seen_at.append(set(met.get(e.user_id, set())))
            seen_at.append(set(met.get(e.user_id, set())))  # realtime, then frozen
        first.add((e.user_id, e.item_id))
        met.setdefault(e.user_id, set()).add(e.item_id)
    assert len(pages) == len(seen_at) > 0
    for (_, page, _), user_seen in zip(pages, seen_at, strict=True):
        assert page, "the engine served a page"
        assert not set(page) & user_seen
    assert result.seen_dropped == 0


def test_popularity_counts_engaged_users_so_far() -> None:
    cat = catalogue(n=5)
    rows = [
        EventRow("a", "u1", "v3", "like", ts=1),
        EventRow("b", "u2", "v3", "like", ts=2),
        EventRow("c", "u3", "v1", "like", ts=3),
        EventRow("d", "u4", "v2", "skip", ts=4),  # not an engagement
        EventRow("e", "u5", "v0", "like", ts=10),  # scored: popularity ranks v3, v1, v0, ...
    ]
    result = replay(rows, cat, split=0.9, k=3)
    assert result.policies["popularity"].hits == 1
    assert result.policies["popularity"].ndcg == pytest.approx(1 / math.log2(4))


# ---- input ----------------------------------------------------------------------------------
def write_items(path: Path, cat: Catalogue) -> None:
    write_jsonl(
        path,
        [
            {"id": it.id, "embedding": v.tolist(), "creator_id": it.creator_id,
             "duration_ms": it.duration_ms, "tags": list(it.tags)}
            for it, v in zip(cat.items, cat.vectors, strict=True)
        ],
    )  # fmt: skip


def event_dict(e: EventRow) -> dict[str, object]:
    return {k: v for k, v in vars(e).items() if v is not None}


def test_files_round_trip_to_the_same_result(tmp_path: Path) -> None:
    cat = catalogue()
    events = log(cat)
    write_items(tmp_path / "items.jsonl", cat)
    write_jsonl(tmp_path / "events.jsonl", [event_dict(e) for e in events])
    read_cat = read_items(tmp_path / "items.jsonl")
    read = read_events(tmp_path / "events.jsonl", read_cat)
    assert read == events
    a = replay(read, read_cat, split=0.5).to_dict()
    b = replay(events, cat, split=0.5).to_dict()
    assert {p: a[p] for p in ("realtime", "frozen", "popularity")} == {
        p: b[p] for p in ("realtime", "frozen", "popularity")
    }


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", ":2: line"),
        ('{"event_id": "e", "user_id": "u", "item_id": "v1", "type": "like"}', ":2: ts: required"),
        ('{"event_id": "e", "user_id": "u", "item_id": "v1", "type": "watch", "ts": 5}',
         ":2: watch_ms: required"),
        ('{"event_id": "e", "user_id": "u", "item_id": "nope", "type": "like", "ts": 5}',
         ":2: item_id: 'nope' is not in the catalogue"),
        ('{"event_id": "e", "user_id": "u", "item_id": "v1", "type": "like", "ts": NaN}',
         ":2: ts"),
        ('{"event_id": "e", "user_id": "u", "item_id": "v1", "type": "jump", "ts": 5}',
         ":2: type"),
        ('{"event_id": "e", "user_id": "u", "item_id": "v1", "type": "like", "ts": 5, "x": 1}',
         ":2: x"),
    ],
)  # fmt: skip
def test_bad_event_lines_name_the_line_and_field(tmp_path: Path, line: str, message: str) -> None:
    cat = catalogue(n=4)
    good = '{"event_id": "e0", "user_id": "u", "item_id": "v0", "type": "like", "ts": 1}'
    path = tmp_path / "events.jsonl"
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(ReplayError, match="events.jsonl" + ".*" + _escape(message)):
        read_events(path, cat)


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_bad_items_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    row = {"id": "v0", "embedding": [0.1, 0.2], "creator_id": "c", "duration_ms": 1000}
    path.write_text(json.dumps(row) + "\n" + json.dumps(row | {"id": "v1", "embedding": [1]}))
    with pytest.raises(ReplayError, match=r"items.jsonl:2: embedding: 1 values"):
        read_items(path)
    path.write_text(json.dumps(row) + "\n" + json.dumps(row).replace("0.2", "NaN"))
    with pytest.raises(ReplayError, match=r"items.jsonl:2: embedding"):
        read_items(path)
    path.write_text(json.dumps(row) + "\n" + json.dumps(row))
    with pytest.raises(ReplayError, match="'v0' appears twice"):
        read_items(path)


def test_missing_files_and_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="no such file"):
        read_events(tmp_path / "absent.jsonl")
    with pytest.raises(ReplayError, match="no such file"):
        read_items(tmp_path / "absent.jsonl")
    cat = catalogue(n=4)
    rows = [EventRow("a", "u", "v1", "like", ts=1), EventRow("b", "u", "v2", "like", ts=2)]
    with pytest.raises(ReplayError, match="split must be in"):
        replay(rows, cat, split=1.0)
    with pytest.raises(ReplayError, match=r"events\[0\] \('x'\): item_id"):
        replay([EventRow("x", "u", "zz", "like", ts=1)], cat)
    with pytest.raises(ReplayError, match="no such configuration file"):
        replay(rows, cat, config=tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[feed]\nsession_wieght = 0.3\n")
    with pytest.raises(ReplayError, match="session_wieght"):
        replay(rows, cat, config=bad)


def test_frozen_popularity_stops_counting_at_the_split() -> None:
    cat = catalogue(n=5)
    rows = [
        EventRow("a", "u1", "v3", "like", ts=1),
        EventRow("b", "u2", "v1", "like", ts=95),  # after the split: all three scored
        EventRow("c", "u3", "v1", "like", ts=96),
        EventRow("d", "u4", "v1", "like", ts=100),
    ]
    result = replay(rows, cat, split=0.9, k=1)
    assert result.policies["popularity"].hits == 2  # c and d: v1 ties v3 (catalogue order), leads
    assert result.policies["popularity_frozen"].hits == 0  # as of the split, v3 leads for good
    assert set(result.to_dict()) >= {"popularity", "popularity_frozen"}


def test_popularity_weight_ranks_a_new_users_page_by_completed_views(tmp_path: Path) -> None:
    cat = catalogue(n=40)
    rows = [
        EventRow(f"e{u}", f"u{u}", "v7", "watch", 20_000, 20_000, ts=1_000 * u) for u in range(6)
    ]
    rows.append(EventRow("s", "new", "v7", "watch", 20_000, 20_000, ts=100_000))  # scored
    config = tmp_path / "recserve.toml"
    config.write_text("[feed]\npopularity_weight = 1.0\n")
    result = replay(rows, cat, split=0.9, config=config, similarity=True)
    assert result.policies["realtime"].ndcg == 1.0  # the most completed item first
    assert result.settings["feed"]["popularity_weight"] == 1.0


def impression_log(cat: Catalogue) -> list[EventRow]:
    """The log of ``log`` with an impression before each watch (what a client posts)."""
    rows: list[EventRow] = []
    for e in log(cat, users=16, per_user=25):
        rows.append(EventRow(e.event_id + "i", e.user_id, e.item_id, "impression", ts=e.ts))
        rows.append(e)
    return rows


def test_train_serves_a_ranker_trained_before_the_split_to_both_engines() -> None:
    pytest.importorskip("torch")
    cat = catalogue()
    result = replay(impression_log(cat), cat, split=0.6, train=True, negatives=2)
    assert result.model_version == "trained-before-split"
    assert result.policies["realtime"].evaluated > 0
    with pytest.raises(ReplayError, match="too few to train"):
        replay(log(cat), cat, split=0.6, train=True)  # no impressions to train on
