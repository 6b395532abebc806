"""The item catalogue: what each item is (creator, duration, tags, media key) and where its
embedding sits in the ANN index.

>>> catalog = Catalog(dims=64)
>>> new = catalog.upsert([Item("v1", "c9", 15_000)], embeddings)   # keys of first-time items
>>> keys, distances = catalog.search(query, k=300, exclude=seen_keys)
>>> catalog.take_down("v1")      # gone from every later search at once; re-post to restore

Items are keyed by ``recserve.ids.key_of(id)``. A takedown removes the item from the index and
the catalogue; re-posting it later adds it again, as a returning item (not a new one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from recserve import ann
from recserve._arrays import as_vectors
from recserve.ids import key_of

__all__ = ["Catalog", "Item"]


@dataclass(frozen=True)
class Item:
    id: str
    creator_id: str
    duration_ms: int
    tags: tuple[str, ...] = ()
    created_at: int = 0  # ms since the epoch
    media_key: str | None = None
    key: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("an item needs a non-empty id")
        if not self.creator_id:
            raise ValueError(f"item {self.id!r} needs a creator_id")
        if self.duration_ms <= 0:
            raise ValueError(f"item {self.id!r}: duration_ms must be > 0, got {self.duration_ms}")
        object.__setattr__(self, "key", key_of(self.id))


class Catalog:
    def __init__(
        self,
        dims: int,
        *,
        metric: ann.Metric = "cosine",
        dtype: ann.Dtype = "int8",
        M: int = 16,
        ef_construction: int = 200,
    ) -> None:  # noqa: N803 - HNSW's name
        self.dims = dims
        self.index = ann.Index(
            dims, metric=metric, dtype=dtype, M=M, ef_construction=ef_construction
        )
        self._items: dict[int, Item] = {}
        self._known: set[int] = set()  # every key ever posted: a re-post is not a new item

    def upsert(self, items: Sequence[Item], embeddings: Any) -> npt.NDArray[np.uint64]:
        """Adds or updates items and their embeddings (float32[len(items), dims]); checked
        first, so a bad batch changes nothing. Returns the keys of items never seen before."""
        vectors = as_vectors(embeddings, "embeddings")
        if vectors.ndim != 2 or vectors.shape != (len(items), self.dims):
            raise ValueError(
                f"embeddings must have shape ({len(items)}, {self.dims}), got {vectors.shape}"
            )
        bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        if bad.size:
            raise ValueError(
                f"embedding of item {items[int(bad[0])].id!r} contains NaN or infinity"
            )
        keys = np.array([item.key for item in items], dtype=np.uint64)
        if len(set(keys.tolist())) != len(keys):
            raise ValueError("an item id appears twice in one batch")
        if self.index.metric == "cosine":
            zero = np.flatnonzero(~vectors.any(axis=1))
            if zero.size:
                raise ValueError(
                    f"embedding of item {items[int(zero[0])].id!r} is all zeros (no direction)"
                )
        self.index.add(keys, vectors)
        new = [k for k in keys.tolist() if k not in self._known]
        for item in items:
            self._items[item.key] = item
        self._known.update(keys.tolist())
        return np.array(new, dtype=np.uint64)

    def take_down(self, item_id: str) -> bool:
        """Removes the item from search and the catalogue; False if it was not there."""
        key = key_of(item_id)
        if self._items.pop(key, None) is None:
            return False
        self.index.remove(np.array([key], dtype=np.uint64))
        return True

    def get(self, item_id: str) -> Item | None:
        return self._items.get(key_of(item_id))

    def by_key(self, key: int) -> Item | None:
        return self._items.get(int(key))

    def search(
        self, query: Any, k: int, *, ef: int = 128, exclude: Any = None
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
        """The k nearest live items to query (one vector), skipping exclude; missing results
        (fewer than k eligible) are dropped."""
        keys, distances = self.index.search(
            np.asarray(query, dtype=np.float32).reshape(-1), k=k, ef=max(ef, k), exclude=exclude
        )
        keep = keys != ann.MISSING_ID
        return keys[keep], distances[keep]

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and key_of(item_id) in self._items
