"""recserve.evaluate.movielens: MovieLens-100K as a replay log (needs ../shared/data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from recserve.evaluate.movielens import default_vectors, movielens_log
from recserve.evaluate.replay import replay

#: ../shared/data/movielens-100k beside the repository root (this file is tests/python/…/).
MOVIELENS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "movielens-100k"


@pytest.fixture
def movielens() -> Path:
    if not (MOVIELENS / "u.data").exists() or not default_vectors(MOVIELENS).exists():
        pytest.skip(f"MovieLens-100K and its MiniLM vectors not found beside {MOVIELENS}")
    return MOVIELENS


def test_ratings_become_events_and_high_ratings_engagements(movielens: Path) -> None:
    catalogue, events = movielens_log(movielens, max_ratings=500)
    assert len(catalogue.items) == 1682
    assert catalogue.dims == 64
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    impressions = [e for e in events if e.type == "impression"]
    assert len(impressions) == 500  # one per rating, before its outcome
    full = sum(1 for e in events if e.type == "watch" and e.watch_ms == e.duration_ms)
    likes = sum(1 for e in events if e.type == "like")
    assert 0 < likes < full < 500

    result = replay(events, catalogue, split=0.5)
    assert result.candidates == sum(
        1 for e in events if e.type == "watch" and e.watch_ms == e.duration_ms
        and (e.ts or 0) >= result.split_ms
    )  # fmt: skip
    assert result.seen_dropped == 0
