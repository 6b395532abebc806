"""recserve.feed through an engine in process: the sources that follow what the user just did
(co-engagement, interests, regions), the learned item quality, and the blend's account."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from recserve.catalog import Item
from recserve.ids import key_of
from recserve.rank import SimilarityRanker
from recserve.service.engine import Engine, EventRow
from recserve.service.settings import Settings

DIMS = 8
CLUSTERS = 4
PER_CLUSTER = 50
T0 = 1_700_000_000_000


def _vectors(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.eye(DIMS, dtype=np.float32)[:CLUSTERS] * 3
    x = np.repeat(centres, PER_CLUSTER, axis=0) + rng.normal(
        scale=0.3, size=(CLUSTERS * PER_CLUSTER, DIMS)
    )
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@contextmanager
def _engine(tmp_path: Path, **feed: Any) -> Iterator[Engine]:
    """A started engine over the clustered catalogue, with these feed settings."""
    settings = Settings(
        data_dir=tmp_path,
        dims=DIMS,
        impression_log=False,
        clock="events",
        index_threads=1,
        feed={"precompute": False, "explore_slots": 0, "served_memory": 0, **feed},
    )
    engine = Engine(settings)
    engine.start()
    try:
        items = [Item(f"i{k}", f"c{k}", 20_000) for k in range(CLUSTERS * PER_CLUSTER)]
        engine.upsert_items(items, _vectors(), amplify=False)
        yield engine
    finally:
        engine.close(snapshot=False)


def _complete(user: str, item: str, at: int) -> EventRow:
    return EventRow(f"{user}-{item}-{at}", user, item, "watch", 20_000, 20_000, T0 + at)


def _page(engine: Engine, user: str, n: int = 10, **kwargs: Any) -> list[Any]:
    assert engine.builder is not None
    return engine.builder.build(
        key_of(user), n, SimilarityRanker(), engine.clock.now_ms(), **kwargs
    ).items


def test_an_item_co_engaged_by_others_reaches_the_page_as_related(tmp_path: Path) -> None:
    with _engine(tmp_path, candidates=20, interest_queries=0, related_weight=1.0) as engine:
        # i0 (cluster 0) and i199 (cluster 3) are far apart, but 20 users completed both.
        engine.post_events(
            [
                e
                for u in range(20)
                for e in (_complete(f"fan{u}", "i0", u), _complete(f"fan{u}", "i199", u))
            ]
        )
        engine.post_events([_complete("newcomer", "i0", 100)])
        page = {s.item_id: s.source for s in _page(engine, "newcomer")}
        assert page.get("i199") == "related"
    with _engine(tmp_path / "off", candidates=20, interest_queries=0, related=0) as off:
        off.post_events([_complete("newcomer", "i0", 100)])
        assert "i199" not in {s.item_id for s in _page(off, "newcomer")}


def test_two_interests_are_both_retrieved(tmp_path: Path) -> None:
    with _engine(
        tmp_path, candidates=5, interest_queries=2, interest_candidates=10, related=0
    ) as engine:
        # the user's positives lie in clusters 1 and 3: their average points at neither
        engine.post_events([_complete("two", "i60", 0), _complete("two", "i160", 1)])
        assert engine.builder is not None
        # The blended query leans to the latest positive (cluster 3): the item nearest the
        # earlier one (cluster 1) comes in through its own interest query.
        similarity = _vectors() @ _vectors()[60]
        similarity[60] = -1
        beside = f"i{int(np.argmax(similarity))}"
        trace = engine.builder.build(
            key_of("two"), 10, SimilarityRanker(), engine.clock.now_ms(), trace_key=key_of(beside)
        ).trace
        assert trace is not None
        assert trace["retrieved"]
        assert trace["source"] == "interest"


def test_a_new_users_pages_span_the_catalogues_regions(tmp_path: Path) -> None:
    with _engine(tmp_path, regions=CLUSTERS, region_weight=1.0, trending=0) as engine:
        clusters: set[int] = set()
        for request in range(3):
            page = _page(engine, "fresh", n=8, seed=request)
            assert {s.source for s in page} == {"cold_start"}
            clusters |= {int(s.item_id[1:]) // PER_CLUSTER for s in page}
        assert clusters == set(range(CLUSTERS))


def test_region_draws_follow_completions_and_fast_skips(tmp_path: Path) -> None:
    with _engine(
        tmp_path, regions=CLUSTERS, region_weight=5.0, related=0, interest_queries=0
    ) as engine:
        events = [_complete("picky", f"i{k}", k) for k in range(5)]  # cluster 0: completed
        events += [
            EventRow(f"s{k}", "picky", f"i{100 + k}", "watch", 500, 20_000, T0 + 10 + k)
            for k in range(5)
        ]  # cluster 2: fast skips
        engine.post_events(events)
        counts = np.zeros(CLUSTERS)
        for request in range(20):
            for s in _page(engine, "picky", n=5, seed=request):
                counts[int(s.item_id[1:]) // PER_CLUSTER] += 1
        assert counts[0] > counts[2]


def test_an_item_that_beats_its_audience_ranks_higher_with_quality(tmp_path: Path) -> None:
    with _engine(tmp_path, quality_weight=2.0, quality_refit_s=0.001, related=0) as engine:
        # Within cluster 0, i10 is completed by everyone who sees it, i11 skipped by all.
        events: list[EventRow] = []
        for u in range(30):
            events.append(_complete(f"v{u}", "i10", u))
            events.append(EventRow(f"k{u}", f"v{u}", "i11", "watch", 500, 20_000, T0 + u))
            events.append(_complete(f"v{u}", f"i{20 + u % 10}", u))  # the curve needs spread
        engine.post_events(events)
        engine.post_events([_complete("judge", "i0", 1000)])
        page = [s.item_id for s in _page(engine, "judge", n=50)]
        assert "i10" in page
        assert "i11" not in page or page.index("i10") < page.index("i11")


def test_explain_lists_the_blend_terms(tmp_path: Path) -> None:
    with _engine(tmp_path, popularity_weight=0.5, related_weight=1.0, quality_weight=0.0) as engine:
        engine.post_events(
            [
                e
                for u in range(5)
                for e in (_complete(f"f{u}", "i0", u), _complete(f"f{u}", "i1", u))
            ]
        )
        engine.post_events([_complete("asker", "i0", 50)])
        assert engine.builder is not None
        trace = engine.builder.build(
            key_of("asker"), 10, SimilarityRanker(), engine.clock.now_ms(), trace_key=key_of("i1")
        ).trace
        assert trace is not None
        assert trace["source"] in {"ann", "related", "interest"}
        assert set(trace["blend_terms"]) == {"popularity", "related"}
        assert trace["blend_terms"]["related"] > 0
