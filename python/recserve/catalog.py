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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recserve import _core, ann
from recserve._arrays import as_vectors
from recserve._columns import read_columns, string_columns, strings, write_columns
from recserve._core import CorruptFileError
from recserve.ids import key_of

__all__ = ["Catalog", "CatalogImage", "Item", "check_batch"]

FILE_MAGIC = b"RSCATLG1"  # the snapshot file of CatalogImage.write
FILE_VERSION = 1


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

    @classmethod
    def _stored(
        cls,
        id_: str,
        creator_id: str,
        duration_ms: int,
        tags: tuple[str, ...],
        created_at: int,
        media_key: str | None,
        key: int,
    ) -> Item:
        """An item read back from a checksummed catalogue file: checked when it was posted,
        its key as stored (no hashing), so a million come back in well under a second."""
        item = object.__new__(cls)
        object.__setattr__(item, "__dict__", {
            "id": id_, "creator_id": creator_id, "duration_ms": duration_ms, "tags": tags,
            "created_at": created_at, "media_key": media_key, "key": key,
        })  # fmt: skip
        return item


def check_batch(
    items: Sequence[Item], embeddings: Any, dims: int, metric: str = "cosine"
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
    """The keys and float32 vectors of a batch for a catalogue of ``dims`` and ``metric``, or
    ValueError naming the first bad item (no catalogue needed: what fixes the dims asks too)."""
    vectors = as_vectors(embeddings, "embeddings")
    if vectors.ndim != 2 or vectors.shape != (len(items), dims):
        raise ValueError(
            f"embeddings must have shape ({len(items)}, {dims}), got {vectors.shape}"
        )
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if bad.size:
        raise ValueError(
            f"embedding of item {items[int(bad[0])].id!r} contains NaN or infinity"
        )
    keys = np.array([item.key for item in items], dtype=np.uint64)
    if len(set(keys.tolist())) != len(keys):
        raise ValueError("an item id appears twice in one batch")
    if metric == "cosine":
        zero = np.flatnonzero(~vectors.any(axis=1))
        if zero.size:
            raise ValueError(
                f"embedding of item {items[int(zero[0])].id!r} is all zeros (no direction)"
            )
    return keys, vectors


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
        # One row per key ever posted (rows are never reused, and a key with a row is a known
        # key: a re-post is not a new item); the snapshot stores them.
        self._row_of: dict[int, int] = {}
        self._key_of_row: list[int] = []
        self._creator_code: dict[str, int] = {}
        #: What the feed reads per candidate (live, created at, creator code), in the core:
        #: both pipelines look it up there, the native one without the GIL.
        self.item_columns = _core.feed.ItemColumns()
        #: Bumped by every takedown: a page computed at an older epoch may hold a removed item.
        self.takedown_epoch = 0

    def check(
        self, items: Sequence[Item], embeddings: Any
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
        """The keys and float32 vectors of a batch, or ValueError naming the first bad item."""
        return check_batch(items, embeddings, self.dims, self.index.metric)

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
        creators = [
            self._creator_code.setdefault(item.creator_id, len(self._creator_code))
            for item in items
        ]
        self.item_columns.set(
            np.array([item.key for item in items], dtype=np.uint64),
            np.array([item.created_at / 1000.0 for item in items], dtype=np.float64),
            np.array(creators, dtype=np.int64),
        )

    def _allocate_rows(self, keys: Sequence[int]) -> None:
        """Rows for the keys that have none."""
        for key in dict.fromkeys(keys):
            if key not in self._row_of:
                self._row_of[key] = len(self._key_of_row)
                self._key_of_row.append(key)

    def rows(self, keys: Any) -> npt.NDArray[np.int64]:
        """Rows of these keys (-1 for a key never posted), for ``columns``."""
        get = self._row_of.get
        return np.array(
            [get(k, -1) for k in np.asarray(keys, dtype=np.uint64).tolist()], dtype=np.int64
        )

    def columns(self, rows: npt.NDArray[np.int64]) -> tuple[Any, Any, Any]:
        """(live, created_at in seconds, creator code) per row, from ``item_columns``; row -1
        is not live, of creator -1."""
        rows = np.asarray(rows, dtype=np.int64)
        known = rows >= 0
        keys = np.array([self._key_of_row[r] for r in rows[known].tolist()], dtype=np.uint64)
        live = np.zeros(len(rows), dtype=bool)
        created = np.zeros(len(rows), dtype=np.float64)
        creator = np.full(len(rows), -1, dtype=np.int64)
        live[known], created[known], creator[known] = self.item_columns.lookup(keys)
        return live, created, creator

    def creator_codes(self, creators: Any) -> npt.NDArray[np.int64]:
        """The codes ``item_columns`` reports for these creator ids (-2 for an unknown one)."""
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
        # first: the feed's filters read this column
        self.item_columns.take_down(np.array([key], dtype=np.uint64))
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

    # ---- snapshot files: columns instead of JSON, and the index as saved -------------------
    def image(self) -> CatalogImage:
        """The metadata now, to write later (``CatalogImage.write``): three C-level list copies
        (items are immutable), so take it with applies paused. The index is not in it: see
        ``restore_columns``."""
        return CatalogImage(
            dict(self._row_of), list(self._items.values()), list(self._creator_code)
        )

    @staticmethod
    def read(path: Path) -> dict[str, npt.NDArray[Any]]:
        """The verified columns of a file ``CatalogImage.write`` wrote (CorruptFileError if it
        is damaged), for ``restore_columns``."""
        return read_columns(path, FILE_MAGIC, FILE_VERSION)

    def index_mismatch(self, index: ann.Index) -> str | None:
        """Why a saved index cannot serve this catalogue (other dims or parameters), or None."""
        ours, theirs = self.index, index
        for name in ("dims", "metric", "dtype", "M", "ef_construction", "rerank"):
            if getattr(ours, name) != getattr(theirs, name):
                mine, saved = getattr(ours, name), getattr(theirs, name)
                return f"its {name} is {saved!r}, the catalogue's {mine!r}"
        return None

    def restore_columns(
        self,
        columns: Mapping[str, npt.NDArray[Any]],
        vectors_of: Callable[[npt.NDArray[np.uint64]], Any],
        index: ann.Index | None = None,
    ) -> None:
        """Loads an empty catalogue from ``CatalogImage.columns`` output. ``index``: the index
        saved with it (``index_mismatch`` None), used as it is: it may hold changes made after
        the image (it is saved later, without pausing applies), which the log's records after
        the image put right when they are replayed (an add replaces, a removal of an absent id
        is a no-op). None: the index is built from ``vectors_of(keys)``, the slow path.
        CorruptFileError if the columns are inconsistent."""
        if self._row_of or self._items:
            raise RuntimeError("restore_columns loads an empty catalogue")
        try:
            row_keys, keys = columns["row_keys"], columns["key"]
            creator_of, durations = columns["creator"], columns["duration_ms"]
            created, media_present = columns["created_at"], columns["media.present"]
            tagset_of, tagset_offsets = columns["tagset"], columns["tagset.offsets"]
            tagset_tags = columns["tagset.tags"]
        except KeyError as missing:
            raise CorruptFileError(f"the catalogue columns lack {missing}") from None
        # Each item's row; files of the first days lack the column: their rows are looked up.
        item_rows = columns.get("row")
        if item_rows is None and len(row_keys):
            by_key = np.argsort(row_keys)
            at = np.searchsorted(row_keys, keys, sorter=by_key)
            item_rows = by_key[np.minimum(at, len(row_keys) - 1)]
        elif item_rows is None:
            item_rows = np.zeros(len(keys), dtype=np.int64)  # no row for any item: refused below
        ids = strings(columns, "id")
        creators = strings(columns, "creators")
        media = strings(columns, "media")
        tags = strings(columns, "tags")
        n, n_rows = len(keys), len(row_keys)
        if (
            {len(ids), len(creator_of), len(durations), len(created), len(media),
             len(media_present), len(tagset_of), len(item_rows)} != {n}
            or _out_of(item_rows, n_rows)
            or _out_of(creator_of, len(creators)) or _out_of(tagset_of, len(tagset_offsets) - 1)
            or _out_of(tagset_tags, len(tags))
            or not (len(tagset_offsets) and tagset_offsets[0] == 0
                    and tagset_offsets[-1] == len(tagset_tags)
                    and not (np.diff(tagset_offsets.astype(np.int64)) < 0).any())
        ):  # fmt: skip
            raise CorruptFileError("the catalogue columns are inconsistent")
        order = np.argsort(row_keys, kind="stable")
        sorted_keys = row_keys[order]
        if n_rows > 1 and not (sorted_keys[1:] != sorted_keys[:-1]).all():
            raise CorruptFileError("the catalogue columns hold a row key twice")
        if n and not (row_keys[item_rows] == keys).all():
            raise CorruptFileError("the catalogue columns give an item another key's row")
        # Distinct tag sets once (shared tuples), then one item per row of the columns.
        set_bounds = tagset_offsets.tolist()
        tag_codes = tagset_tags.tolist()
        tagsets = [
            tuple(tags[t] for t in tag_codes[a:b])
            for a, b in zip(set_bounds[:-1], set_bounds[1:], strict=True)
        ]
        media_keys = [m if p else None for m, p in zip(media, media_present.tolist(), strict=True)]
        key_list = keys.tolist()
        items = list(map(
            Item._stored, ids, [creators[c] for c in creator_of.tolist()], durations.tolist(),
            [tagsets[t] for t in tagset_of.tolist()], created.tolist(), media_keys, key_list,
        ))  # fmt: skip
        self._items = dict(zip(key_list, items, strict=True))
        if len(self._items) != n:
            raise CorruptFileError("the catalogue columns hold an item twice")
        self._key_of_row = row_keys.tolist()
        self._row_of = dict(zip(self._key_of_row, range(n_rows), strict=True))
        self.item_columns.clear()
        self.item_columns.set(
            np.ascontiguousarray(keys, dtype=np.uint64),
            np.asarray(created, dtype=np.float64) / 1000.0,
            np.asarray(creator_of, dtype=np.int64),
        )
        self._creator_code = dict(zip(creators, range(len(creators)), strict=True))
        self._by_tag = self._tag_sets(keys, tagset_of, tagset_offsets, tagset_tags, tags)
        self._keys = None
        if index is None:
            live = np.asarray(keys, dtype=np.uint64)
            if n:
                self.index.add(live, vectors_of(live), threads=self.index_threads)
        else:
            self.index = index

    @staticmethod
    def _tag_sets(
        keys: npt.NDArray[Any],
        tagset_of: npt.NDArray[Any],
        tagset_offsets: npt.NDArray[Any],
        tagset_tags: npt.NDArray[Any],
        tags: list[str],
    ) -> dict[str, set[int]]:
        """tag -> keys carrying it, from each item's tag set, in numpy (no loop per item)."""
        offsets = tagset_offsets.astype(np.int64)
        sizes = np.diff(offsets)[tagset_of]
        total = int(sizes.sum())
        if not total:
            return {}
        # Position of each (item, tag) pair in tagset_tags: its set's start plus its rank.
        starts = np.repeat(offsets[:-1][tagset_of] - (np.cumsum(sizes) - sizes), sizes)
        flat = tagset_tags[starts + np.arange(total)]
        owners = np.repeat(np.asarray(keys, dtype=np.uint64), sizes)
        by = np.argsort(flat, kind="stable")
        flat, owners = flat[by], owners[by]
        cuts = np.flatnonzero(np.diff(flat)) + 1
        return {
            tags[int(chunk_tags[0])]: set(chunk_keys.tolist())
            for chunk_tags, chunk_keys in zip(
                np.split(flat, cuts), np.split(owners, cuts), strict=True
            )
        }

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


class CatalogImage:
    """The catalogue's metadata at one moment (``Catalog.image``), as columns or a file:
    every row's key (taken-down items keep theirs), the live items, the creator codes."""

    def __init__(self, row_of: dict[int, int], items: list[Item], creators: list[str]) -> None:
        self.row_of = row_of
        self.items = items
        self.creators = creators

    def write(self, path: Path) -> None:
        """Writes the file whole (temporary file, fsync, rename)."""
        write_columns(path, FILE_MAGIC, FILE_VERSION, self.columns())

    def columns(self) -> dict[str, npt.NDArray[Any]]:
        """Tag sets and creators are stored once each, items refer to them by number."""
        items, n = self.items, len(self.items)
        creator_code = {creator: code for code, creator in enumerate(self.creators)}
        tagset_code: dict[tuple[str, ...], int] = {}
        columns: dict[str, npt.NDArray[Any]] = {
            "row_keys": np.fromiter(self.row_of, np.uint64, len(self.row_of)),  # in row order
            "key": np.fromiter((item.key for item in items), np.uint64, n),
            "row": np.fromiter((self.row_of[item.key] for item in items), np.uint32, n),
            "creator": np.fromiter((creator_code[item.creator_id] for item in items), np.uint32, n),
            "duration_ms": np.fromiter((item.duration_ms for item in items), np.int64, n),
            "created_at": np.fromiter((item.created_at for item in items), np.int64, n),
            "media.present": np.fromiter(
                (item.media_key is not None for item in items), np.uint8, n
            ),
            "tagset": np.fromiter(
                (tagset_code.setdefault(item.tags, len(tagset_code)) for item in items),
                np.uint32,
                n,
            ),
        }
        tag_code: dict[str, int] = {}
        columns["tagset.tags"] = np.array(
            [tag_code.setdefault(tag, len(tag_code)) for tagset in tagset_code for tag in tagset],
            dtype=np.uint32,
        )
        lengths = np.fromiter(map(len, tagset_code), np.uint64, len(tagset_code))
        columns["tagset.offsets"] = np.concatenate(([0], np.cumsum(lengths))).astype(np.uint64)
        columns.update(string_columns("id", [item.id for item in items]))
        columns.update(string_columns("media", [item.media_key or "" for item in items]))
        columns.update(string_columns("creators", self.creators))
        columns.update(string_columns("tags", list(tag_code)))
        return columns


def _out_of(codes: npt.NDArray[Any], size: int) -> bool:
    return bool(len(codes) and int(codes.max()) >= size)
