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

from collections.abc import Mapping, Sequence
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

    def to_row(self) -> list[Any]:
        """The item as a JSON-ready row (how logs and snapshots store it); see ``from_row``."""
        return [
            self.id, self.creator_id, self.duration_ms, list(self.tags), self.created_at,
            self.media_key,
        ]  # fmt: skip

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Item:
        id_, creator, duration, tags, created, media = row
        return cls(id_, creator, duration, tuple(tags), created, media)


class Catalog:
    def __init__(
        self,
        dims: int,
        *,
        metric: ann.Metric = "cosine",
        dtype: ann.Dtype = "int8",
        M: int = 16,
        ef_construction: int = 200,
        index_threads: int = 0,
    ) -> None:  # noqa: N803 - HNSW's name
        self.dims = dims
        self.index_threads = index_threads  # 1: the same graph from the same batches
        self.index = ann.Index(
            dims, metric=metric, dtype=dtype, M=M, ef_construction=ef_construction
        )
        self._items: dict[int, Item] = {}
        self._by_tag: dict[str, set[int]] = {}
        self._keys: npt.NDArray[np.uint64] | None = None  # live keys, built on demand
        # Columns for the feed's per-candidate work, one row per key ever posted (rows are
        # never reused, and a key with a row is a known key: a re-post is not a new item). A
        # new row reads as not live until its item's values are in.
        self._row_of: dict[int, int] = {}
        self._live = np.zeros(0, dtype=bool)
        self._created_s = np.zeros(0, dtype=np.float64)
        self._creator = np.zeros(0, dtype=np.int64)
        self._creator_code: dict[str, int] = {}
        # rows() looks keys up in a sorted array (vectorised) and, for keys posted since it
        # was built, in a small dict; the array is rebuilt once that dict holds 4,096 keys.
        self._sorted: tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]] = (
            np.zeros(0, dtype=np.uint64),
            np.zeros(0, dtype=np.int64),
        )
        self._recent_rows: dict[int, int] = {}
        #: Bumped by every takedown: a page computed at an older epoch may hold a removed item.
        self.takedown_epoch = 0

    def check(
        self, items: Sequence[Item], embeddings: Any
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
        """The keys and float32 vectors of a batch, or ValueError naming the first bad item."""
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
        return keys, vectors

    def upsert(self, items: Sequence[Item], embeddings: Any) -> npt.NDArray[np.uint64]:
        """Adds or updates items and their embeddings (float32[len(items), dims]); checked
        first, so a bad batch changes nothing. Returns the keys of items never seen before."""
        keys, vectors = self.check(items, embeddings)
        self.index.add(keys, vectors, threads=self.index_threads)
        new = [k for k in keys.tolist() if k not in self._row_of]
        self._set_columns(items)
        for item in items:
            old = self._items.get(item.key)
            if old is not None:
                self._untag(old)
            self._items[item.key] = item
            for tag in item.tags:
                self._by_tag.setdefault(tag, set()).add(item.key)
        self._keys = None
        return np.array(new, dtype=np.uint64)

    def _set_columns(self, items: Sequence[Item]) -> None:
        self._allocate_rows([item.key for item in items])
        for item in items:
            row = self._row_of[item.key]
            self._created_s[row] = item.created_at / 1000.0
            self._creator[row] = self._creator_code.setdefault(
                item.creator_id, len(self._creator_code)
            )
            self._live[row] = True

    def _allocate_rows(self, keys: Sequence[int]) -> None:
        """Rows (not live yet) for the keys that have none."""
        fresh = [key for key in dict.fromkeys(keys) if key not in self._row_of]
        needed = len(self._row_of) + len(fresh)
        if needed > len(self._live):
            size = max(needed, 2 * len(self._live), 1024)
            n = len(self._live)
            columns = []
            for old in (self._live, self._created_s, self._creator):
                grown = np.zeros(size, dtype=old.dtype)
                grown[:n] = old
                columns.append(grown)
            self._live, self._created_s, self._creator = columns
        rows = {key: len(self._row_of) + i for i, key in enumerate(fresh)}
        self._row_of.update(rows)
        if len(self._recent_rows) + len(rows) > 4096:
            keys_array = np.array(list(self._row_of), dtype=np.uint64)
            values = np.array(list(self._row_of.values()), dtype=np.int64)
            order = np.argsort(keys_array)
            self._sorted = (keys_array[order], values[order])  # before the dict is emptied
            self._recent_rows = {}
        else:
            self._recent_rows.update(rows)

    def rows(self, keys: Any) -> npt.NDArray[np.int64]:
        """Column rows of these keys (-1 for a key never posted), for ``columns``."""
        keys = np.asarray(keys, dtype=np.uint64)
        sorted_keys, sorted_rows = self._sorted
        out = np.full(len(keys), -1, dtype=np.int64)
        if len(sorted_keys):
            at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
            hit = sorted_keys[at] == keys
            out[hit] = sorted_rows[at[hit]]
        misses = np.flatnonzero(out < 0)
        if len(misses):
            get = self._recent_rows.get
            out[misses] = [get(k, -1) for k in keys[misses].tolist()]
        return out

    def columns(self, rows: npt.NDArray[np.int64]) -> tuple[Any, Any, Any]:
        """(live, created_at in seconds, creator code) per row; row -1 is not live."""
        live, created, creator = self._live, self._created_s, self._creator
        known = rows >= 0
        safe = np.where(known, rows, 0)
        return live[safe] & known, created[safe], np.where(known, creator[safe], -1)

    def creator_codes(self, creators: Any) -> npt.NDArray[np.int64]:
        """The codes ``columns`` reports for these creator ids (-2 for an unknown creator)."""
        return np.array([self._creator_code.get(c, -2) for c in creators], dtype=np.int64)

    def _untag(self, item: Item) -> None:
        for tag in item.tags:
            keys = self._by_tag.get(tag)
            if keys is not None:
                keys.discard(item.key)
                if not keys:
                    del self._by_tag[tag]

    def take_down(self, item_id: str) -> bool:
        """Removes the item from search and the catalogue; False if it was not there."""
        key = key_of(item_id)
        item = self._items.get(key)
        if item is None:
            return False
        self._live[self._row_of[key]] = False  # first: the feed's filters read this column
        del self._items[key]
        self.takedown_epoch += 1
        self._untag(item)
        self._keys = None
        self.index.remove(np.array([key], dtype=np.uint64))
        return True

    def keys(self) -> npt.NDArray[np.uint64]:
        """Every live item's key (a cached array; do not modify)."""
        keys = self._keys
        if keys is None:
            # list() of a dict is one step under the GIL: safe while a writer adds items
            keys = self._keys = np.array(list(self._items), dtype=np.uint64)
        return keys

    def tagged(self, tags: Sequence[str]) -> npt.NDArray[np.uint64]:
        """Keys of the live items that carry any of the tags."""
        found: set[int] = set()
        for tag in tags:
            found |= self._by_tag.get(tag, set())
        return np.fromiter(found, dtype=np.uint64, count=len(found))

    def tag_counts(self, keys: Any) -> dict[str, int]:
        """How many of these items carry each tag."""
        counts: dict[str, int] = {}
        for key in np.asarray(keys, dtype=np.uint64).tolist():
            item = self._items.get(key)
            for tag in item.tags if item is not None else ():
                counts[tag] = counts.get(tag, 0) + 1
        return counts

    def state(self) -> dict[str, Any]:
        """The metadata (not the vectors) as JSON-ready data; see ``restore``."""
        return {
            "items": [item.to_row() for item in self._items.values()],
            "known": [str(k) for k in self._row_of],
        }

    def restore(self, state: Mapping[str, Any], vectors_of: Any) -> None:
        """Loads ``state()`` output; ``vectors_of(keys)`` gives the items' embeddings."""
        items = [Item.from_row(row) for row in state["items"]]
        if items:
            keys = np.array([item.key for item in items], dtype=np.uint64)
            self.upsert(items, vectors_of(keys))
        self._allocate_rows([int(k) for k in state["known"]])  # taken down: known, not live

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
