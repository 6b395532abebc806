"""Candidate sources besides the ANN search itself: the user's query vector, and trending items.

``query_vector`` blends the long-term and session vectors (each normalised, so a fresh session
counts as much as years of history at ``session_weight`` 0.5). ``Trending`` keeps exponentially
decayed engagement per item (completions, likes, shares, replays count; skips take away) and
serves the current top items: the fallback when a user's own candidates run short, and the
popular start of a user with no history.
"""

from __future__ import annotations

import heapq
import math
import threading

import numpy as np
import numpy.typing as npt

from recserve import _core
from recserve.profiles import EVENT_TYPES

__all__ = ["TRENDING_WEIGHTS", "Trending", "query_vector"]

F32 = npt.NDArray[np.float32]

#: Engagement each event type adds to an item's trending score.
TRENDING_WEIGHTS: dict[str, float] = {
    "impression": 0.0,
    "watch": 1.0,
    "replay": 1.5,
    "like": 2.0,
    "share": 3.0,
    "comment": 2.0,
    "follow": 2.0,
    "skip": -0.5,
    "not_interested": -2.0,
}
_WEIGHT_BY_CODE = np.array([TRENDING_WEIGHTS[t] for t in EVENT_TYPES], dtype=np.float64)


def query_vector(long_term: F32, session: F32, session_weight: float) -> F32 | None:
    """The ANN query for one user, or None when the user has no direction yet."""
    query: F32 | None = _core.feed.query_vector(
        np.ascontiguousarray(long_term, dtype=np.float32),
        np.ascontiguousarray(session, dtype=np.float32),
        float(session_weight),
    )
    return query  # the core's arithmetic, which the native feed runs too


class Trending:
    """Decayed engagement per item; ``top(k)`` is recomputed at most every ``refresh_s``."""

    def __init__(self, half_life_s: float = 3600.0, *, keep: int = 10_000, refresh_s: float = 1.0):
        self.half_life_s = half_life_s
        self.keep = keep
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._scores: dict[int, float] = {}  # score as of _epoch_s (decay folded in lazily)
        self._epoch_s: float | None = None  # set by the first add
        self._top: npt.NDArray[np.uint64] = np.zeros(0, dtype=np.uint64)
        self._top_at = -math.inf

    def _growth(self, now_s: float) -> float:
        # Scores are stored scaled to the epoch: adding at time t adds w * 2^((t - epoch)/h).
        assert self._epoch_s is not None
        return float(2.0 ** ((now_s - self._epoch_s) / self.half_life_s))

    def add(
        self, items: npt.NDArray[np.uint64], types: npt.NDArray[np.uint8], now_s: float
    ) -> None:
        weights = _WEIGHT_BY_CODE[types]
        keep = weights != 0.0
        if not keep.any():
            return
        keys, inverse = np.unique(items[keep], return_inverse=True)
        sums = np.bincount(inverse, weights=weights[keep])
        with self._lock:
            if self._epoch_s is None or abs(now_s - self._epoch_s) > 20 * self.half_life_s:
                self._rebase(now_s)
            scale = self._growth(now_s)
            scores = self._scores
            for key, value in zip(keys.tolist(), (sums * scale).tolist(), strict=True):
                scores[key] = scores.get(key, 0.0) + value

    def _rebase(self, now_s: float) -> None:
        if self._epoch_s is not None:
            shrink = 2.0 ** (-max(min((now_s - self._epoch_s) / self.half_life_s, 1000.0), -1000.0))
            self._scores = {k: v * shrink for k, v in self._scores.items() if v * shrink > 1e-6}
        self._epoch_s = now_s

    def remove(self, item: int) -> None:
        with self._lock:
            self._scores.pop(item, None)
            self._top = self._top[self._top != np.uint64(item)]

    def scores(self, items: npt.NDArray[np.uint64], now_s: float) -> npt.NDArray[np.float64]:
        """Each item's decayed score as of now_s (0 for an item without one)."""
        with self._lock:
            if self._epoch_s is None:
                return np.zeros(len(items), dtype=np.float64)
            get = self._scores.get
            raw = np.array([get(key, 0.0) for key in items.tolist()], dtype=np.float64)
            return raw / self._growth(now_s)

    def top(self, k: int, now_s: float) -> npt.NDArray[np.uint64]:
        """The k items with the highest positive score (cached for refresh_s)."""
        with self._lock:
            if now_s - self._top_at >= self.refresh_s:
                self._top_at = now_s
                if len(self._scores) > 2 * self.keep:  # forget the long tail
                    cut = sorted(self._scores.values(), reverse=True)[self.keep - 1]
                    self._scores = {i: v for i, v in self._scores.items() if v >= cut}
                best = heapq.nlargest(max(k, 256), self._scores.items(), key=lambda kv: kv[1])
                self._top = np.array([i for i, v in best if v > 0.0], dtype=np.uint64)
            return self._top[:k]
