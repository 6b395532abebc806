"""How a candidate relates to what the user just did: the ranker's features that follow the
candidate sources. One definition, used by the feed (one user, its candidates) and by the
training replay (each logged impression as of its serve time)::

    related = related_score_of(item_keys, related_keys, related_scores)   # Profiles.related's
    a = affinity(related, item_vectors, positive_vectors, positive_ts_ms, now_ms, centroids)
    a.related, a.positive_similarity, a.region_positive_hours     # each float32 [n]

- ``related``: the item's co-engagement score from the user's recent positives
  (``Profiles.related``), 0 when it is not among them;
- ``positive_similarity``: the largest cosine between the item and one of the user's recent
  positives (0 without positives);
- ``region_positive_hours``: hours since the user's latest positive in the item's catalogue
  region (``recserve.regions``), ``NO_POSITIVE_HOURS`` when they have none there (or there are
  no regions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recserve import _core

__all__ = ["NO_POSITIVE_HOURS", "Affinity", "AffinityQuery", "affinity", "related_score_of"]

#: What ``region_positive_hours`` says when the user has no positive in the region: 30 days.
NO_POSITIVE_HOURS = 720.0

F32 = npt.NDArray[np.float32]
U64 = npt.NDArray[np.uint64]


@dataclass(frozen=True)
class AffinityQuery:
    """How the co-engagement scores are asked for (the feed's ``related``, ``related_recency``
    and ``related_alpha``) and how many regions there are (``regions``): the training replay
    must ask as the feed does."""

    related: int = 100
    recency: float = 0.8
    alpha: float = 0.5
    regions: int = 16


@dataclass(frozen=True)
class Affinity:
    related: F32
    positive_similarity: F32
    region_positive_hours: F32


def related_score_of(item_keys: U64, related_keys: U64, related_scores: F32) -> F32:
    """Each item's score among (related_keys, related_scores), 0 where it is not there."""
    out = np.zeros(len(item_keys), dtype=np.float32)
    if len(related_keys):
        order = np.argsort(related_keys)
        sorted_keys = related_keys[order]
        at = np.minimum(np.searchsorted(sorted_keys, item_keys), len(sorted_keys) - 1)
        hit = sorted_keys[at] == item_keys
        out[hit] = related_scores[order][at[hit]]
    return out


def affinity(
    related: F32,
    item_vectors: F32,
    positive_vectors: F32,
    positive_ts_ms: npt.NDArray[np.int64],
    now_ms: float,
    centroids: F32 | None,
) -> Affinity:
    """The three features for n candidates of one user (see the module doc); ``related`` is
    their co-engagement scores (``related_score_of``), which the feed's blend reads too."""
    # The core's arithmetic (recserve/feed/features.hpp), which the native feed runs too.
    similarity, hours = _core.feed.affinity(
        np.ascontiguousarray(item_vectors, dtype=np.float32),
        np.ascontiguousarray(positive_vectors, dtype=np.float32).reshape(-1, item_vectors.shape[1]),
        np.ascontiguousarray(positive_ts_ms, dtype=np.int64),
        float(now_ms),
        None if centroids is None else np.ascontiguousarray(centroids, dtype=np.float32),
    )
    return Affinity(related, similarity, hours)
