"""Regions of the catalogue, and the explore/exploit rule that spreads a user's first pages
over them.

    regions = Regions(count=16, seed=0)
    regions.refresh(catalog_keys, vectors_of)      # k-means when the catalogue has changed
    regions.assign(vectors)                        # the nearest centroid of each row (-1: none)
    a, b = regions.posteriors(met_regions, positive_regions, prior=(1, 1))
    scores = thompson(regions.assign(candidate_vectors), (a, b), rng)   # one draw a candidate

**Regions** are the centroids of spherical k-means over the item vectors (a seeded sample of at
most ``sample`` items, k-means++ start, ``iterations`` Lloyd steps). They are recomputed when the
number of live items has moved by ``refit_share`` (10 %) since the last fit, so a catalogue that
grows or turns over keeps regions that cover it.

**The rule, per slot: Thompson sampling over regions.** Each region r has, for one user, a Beta
posterior of the chance that an item from r engages them: ``Beta(a + positives_r,
b + misses_r)`` over the user's recent items (``positives``: their recent positives there;
``misses``: items met there without a positive, fast skips among them). Every candidate of a
request gets its own draw from its region's posterior, and its score gains ``weight * draw``, so
each slot of the page goes to the best draw: a Thompson choice per slot. A user without history
draws from the prior alone, so a page spreads over the regions (the cold-start candidates
include the items nearest each centroid), and the first reactions locate them: a completion
raises its region's draws, a fast skip lowers them (beside the update rule, which moves the
user's vectors away from a skipped item). As evidence piles up the posteriors narrow and the
term orders regions by what the user liked there, so exploration fades by itself, without a
schedule.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

__all__ = ["Regions", "spherical_kmeans", "thompson", "unit_rows"]

F32 = npt.NDArray[np.float32]
U64 = npt.NDArray[np.uint64]
_CENTRAL = 64  # items kept per region for new users' candidates


def unit_rows(x: npt.NDArray[np.floating]) -> F32:
    """Each row scaled to length 1 (a zero row stays zero)."""
    rows: F32 = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    out: F32 = np.zeros_like(rows)
    np.divide(rows, norms, out=out, where=norms > 1e-12)
    return out


def spherical_kmeans(
    vectors: npt.NDArray[np.floating], k: int, *, iterations: int = 10, seed: int = 0
) -> F32:
    """k unit centroids of the unit-normalised rows (fewer when there are fewer distinct rows):
    k-means++ start, then Lloyd steps on cosine similarity. Seeded: the same input gives the
    same centroids."""
    x = unit_rows(vectors)
    x = x[np.linalg.norm(x, axis=1) > 0.5]
    if len(x) == 0 or k < 1:
        return np.zeros((0, np.asarray(vectors).shape[1]), dtype=np.float32)
    rng = np.random.default_rng(seed)
    k = min(k, len(x))
    centres = [x[rng.integers(len(x))]]
    nearest = 1.0 - x @ centres[0]
    for _ in range(1, k):
        weights = np.maximum(nearest, 0.0) ** 2
        total = float(weights.sum())
        if total <= 1e-12:
            break  # every row is at a centre already
        centres.append(x[rng.choice(len(x), p=weights / total)])
        nearest = np.minimum(nearest, 1.0 - x @ centres[-1])
    c = np.array(centres, dtype=np.float32)
    for _ in range(iterations):
        label = np.argmax(x @ c.T, axis=1)
        sums = np.zeros_like(c)
        np.add.at(sums, label, x)
        empty = np.linalg.norm(sums, axis=1) < 1e-12
        sums[empty] = c[empty]  # an empty cluster keeps its centre
        c = unit_rows(sums)
    return c


class Regions:
    """The catalogue's k-means regions (see the module doc); thread-safe to read while a
    refresh replaces them."""

    def __init__(
        self,
        count: int = 16,
        *,
        sample: int = 20_000,
        iterations: int = 10,
        refit_share: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.count = count
        self.sample = sample
        self.iterations = iterations
        self.refit_share = refit_share
        self.seed = seed
        self._lock = threading.Lock()
        self._centroids: F32 | None = None
        self._central: list[U64] = []  # per region, the sampled items nearest its centroid
        self._fitted_on = 0  # live items at the last fit

    @property
    def centroids(self) -> F32 | None:
        return self._centroids

    def stale(self, live_items: int) -> bool:
        if self.count < 1 or live_items == 0:
            return False
        if self._centroids is None:
            return True
        return abs(live_items - self._fitted_on) > self.refit_share * max(self._fitted_on, 1)

    def refresh(self, keys: U64, vectors_of: Callable[[U64], F32]) -> bool:
        """Refits on a seeded sample of ``keys`` (the live items) if the catalogue has moved
        enough since the last fit; whether it did. One caller fits; others go on with the old
        regions rather than wait."""
        if not self.stale(len(keys)) or not self._lock.acquire(blocking=False):
            return False
        try:
            if not self.stale(len(keys)):
                return False
            rng = np.random.default_rng(self.seed)
            chosen = keys if len(keys) <= self.sample else rng.choice(keys, self.sample, False)
            chosen = np.sort(chosen)
            vectors = vectors_of(chosen)
            centroids = spherical_kmeans(
                vectors, self.count, iterations=self.iterations, seed=self.seed
            )
            central: list[U64] = []
            if len(centroids):
                similarity = unit_rows(vectors) @ centroids.T
                label = np.argmax(similarity, axis=1)
                for r in range(len(centroids)):
                    members = np.flatnonzero(label == r)
                    nearest = members[np.argsort(-similarity[members, r], kind="stable")]
                    central.append(chosen[nearest[:_CENTRAL]])
            self._centroids, self._central = (centroids, central) if len(centroids) else (None, [])
            self._fitted_on = len(keys)
            return True
        finally:
            self._lock.release()

    def sample_central(self, n: int, rng: np.random.Generator) -> U64:
        """About n items spread evenly over the regions, each drawn from the items nearest its
        region's centroid (as of the last fit): a new user's first candidates."""
        central = self._central
        if not central:
            return np.zeros(0, dtype=np.uint64)
        per = max(1, n // len(central))
        picks = [c if len(c) <= per else rng.choice(c, per, replace=False) for c in central]
        return np.concatenate(picks).astype(np.uint64)

    def assign(self, vectors: npt.NDArray[np.floating]) -> npt.NDArray[np.int64]:
        """The region of each row (-1 without regions, or for a zero row)."""
        c = self._centroids
        vectors = np.asarray(vectors, dtype=np.float32)
        if c is None or len(vectors) == 0:
            return np.full(len(vectors), -1, dtype=np.int64)
        region: npt.NDArray[np.int64] = np.argmax(vectors @ c.T, axis=1).astype(np.int64)
        region[np.linalg.norm(vectors, axis=1) < 1e-12] = -1
        return region

    def posteriors(
        self,
        met: npt.NDArray[np.int64],
        positive: npt.NDArray[np.int64],
        prior: tuple[float, float] = (1.0, 1.0),
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Each region's Beta(a + positives, b + misses) for one user, as (a, b) arrays, where
        ``met`` holds the region of each recent item the user met and ``positive`` those of
        their recent positives (region -1 ignored). Empty without regions."""
        c = self._centroids
        if c is None:
            return np.zeros(0), np.zeros(0)
        k = len(c)
        hits = np.bincount(positive[positive >= 0], minlength=k)[:k].astype(np.float64)
        seen = np.bincount(met[met >= 0], minlength=k)[:k].astype(np.float64)
        misses = np.maximum(seen - hits, 0.0)
        return prior[0] + hits, prior[1] + misses


def thompson(
    region: npt.NDArray[np.int64],
    posterior: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]],
    rng: np.random.Generator,
) -> F32:
    """One draw per candidate from its region's posterior (0 for a candidate without a region):
    the page's slots then go to the best draws, so each slot is a Thompson choice."""
    a, b = posterior
    out = np.zeros(len(region), dtype=np.float32)
    known = region >= 0
    if len(a) and known.any():
        out[known] = rng.beta(a[region[known]], b[region[known]])
    return out
