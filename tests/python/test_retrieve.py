"""recserve.retrieve: the blended query vector and decayed trending scores."""

from __future__ import annotations

import numpy as np

from recserve.profiles import EVENT_TYPES
from recserve.retrieve import Trending, query_vector


def codes(*names: str) -> np.ndarray:
    return np.array([EVENT_TYPES.index(n) for n in names], dtype=np.uint8)


def test_query_blends_normalised_vectors_and_is_none_without_direction() -> None:
    long_term = np.array([10.0, 0.0], dtype=np.float32)
    session = np.array([0.0, 0.1], dtype=np.float32)
    assert np.allclose(query_vector(long_term, session, 0.5), [0.5, 0.5])
    assert np.allclose(query_vector(long_term, np.zeros(2, np.float32), 0.5), [0.5, 0.0])
    assert query_vector(np.zeros(2, np.float32), np.zeros(2, np.float32), 0.5) is None


def test_trending_ranks_by_engagement_and_skips_take_away() -> None:
    t = Trending(half_life_s=3600, refresh_s=0.0)
    items = np.array([1, 1, 2, 3, 3, 3], dtype=np.uint64)
    t.add(items, codes("share", "like", "watch", "skip", "skip", "skip"), now_s=1000.0)
    assert t.top(3, now_s=1000.0).tolist() == [1, 2]  # item 3's score is negative


def test_trending_decays_with_its_half_life() -> None:
    t = Trending(half_life_s=10.0, refresh_s=0.0)
    t.add(np.array([1], dtype=np.uint64), codes("share"), now_s=0.0)  # 3.0, then decays
    t.add(np.array([2], dtype=np.uint64), codes("watch"), now_s=20.0)  # 1.0 > 3.0 / 4
    assert t.top(2, now_s=20.0).tolist() == [2, 1]
    t.add(np.array([1], dtype=np.uint64), codes("watch"), now_s=10_000.0)  # far later: rebased
    assert t.top(1, now_s=10_000.0).tolist() == [1]


def test_removed_items_leave_trending_at_once() -> None:
    t = Trending(refresh_s=3600.0)
    t.add(np.array([1, 2], dtype=np.uint64), codes("share", "like"), now_s=0.0)
    assert t.top(2, now_s=0.0).tolist() == [1, 2]
    t.remove(1)
    assert t.top(2, now_s=1.0).tolist() == [2]  # even from the cached top
