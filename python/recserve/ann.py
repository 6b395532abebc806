"""A graph index (HNSW) over item embeddings that a live feed can search while it changes.

>>> idx = Index(dims=64, metric="cosine", dtype="int8")
>>> idx.add(ids, vectors)                     # an existing id is updated
>>> ids, dist = idx.search(query, k=10, ef=64, exclude=seen)
>>> idx.remove(taken_down)                    # gone from every later search at once

Distances ascend: ``l2`` is the squared Euclidean distance, ``ip`` is ``1 - <q, x>`` and
``cosine`` is ``1 - cos(q, x)``. Where fewer than k eligible items exist, the missing results
are ``MISSING_ID`` (2**64 - 1) with distance ``inf``.

Any number of threads may search while one thread adds and removes; searches release the GIL.
Removed ids are tombstones until the graph is repaired around them: in the background once
they reach ``compact_threshold`` of the live items, or now with ``compact()``.
"""

from __future__ import annotations

import os
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from recserve import _core
from recserve._arrays import as_id_rows
from recserve._arrays import as_ids as _as_ids
from recserve._arrays import as_vectors as _as_vectors

__all__ = ["MISSING_ID", "CorruptFileError", "Index", "Removed", "SearchResult"]

MISSING_ID: int = _core.ann.MISSING_ID
CorruptFileError = _core.CorruptFileError

Metric = Literal["cosine", "ip", "l2"]
Dtype = Literal["float32", "int8"]


class SearchResult(NamedTuple):
    """ids uint64 and distances float32, shape (k,) for one query or (q, k) for a batch."""

    ids: npt.NDArray[np.uint64]
    distances: npt.NDArray[np.float32]


class Removed(NamedTuple):
    """How many ids were removed, and the ids that were not in the index."""

    removed: int
    missing: npt.NDArray[np.uint64]


class Index:
    """An HNSW index: ``dtype="int8"`` stores per-vector-scaled int8 codes (about a quarter of
    float32's memory) searched with int8 kernels; ``rerank=True`` also keeps float32 copies and
    re-ranks the short list exactly."""

    def __init__(self, dims: int, metric: Metric = "cosine", dtype: Dtype = "int8", M: int = 16,
                 ef_construction: int = 128, *, rerank: bool = False, seed: int = 0,
                 compact_threshold: float = 0.1, _core_index: Any = None) -> None:
        if _core_index is not None:
            self._index = _core_index
            return
        for name, value in (("dims", dims), ("M", M), ("ef_construction", ef_construction)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        self._index = _core.ann.Index(int(dims), metric, dtype, int(M), int(ef_construction),
                                      bool(rerank), int(seed), float(compact_threshold))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, compact_threshold: float | None = None) -> Index:
        """Loads a saved index; a corrupt or truncated file raises CorruptFileError.

        compact_threshold: None keeps the one the index was saved with.
        """
        threshold = None if compact_threshold is None else float(compact_threshold)
        return cls(0, _core_index=_core.ann.Index.load(os.fspath(path), threshold))

    def add(self, ids: Any, vectors: Any, *, threads: int = 0) -> None:
        """Adds items (or updates existing ids). vectors: float32 [n, dims] (or [dims] for one).

        The whole batch is rejected, changing nothing, on a wrong shape, a NaN or infinite
        value, or an id repeated in the batch. threads=0 uses every core.
        """
        id_array, vec_array = as_id_rows(ids, vectors)
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        self._index.add(id_array, vec_array, int(threads))

    def search(self, queries: Any, k: int = 10, ef: int = 64,
               exclude: Any = None) -> SearchResult:
        """The k nearest items to each query, never an id in ``exclude``.

        queries: float32 [dims] (results of shape (k,)) or [q, dims] (results (q, k)).
        ef: the search beam; larger is slower and more accurate (at least k is used).
        """
        query_array = _as_vectors(queries, "queries")
        single = query_array.ndim == 1
        if single:
            query_array = query_array.reshape(1, -1)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if ef < 1:
            raise ValueError(f"ef must be >= 1, got {ef}")
        excluded = None if exclude is None else _as_ids(exclude, "exclude")
        ids, dist = self._index.search(query_array, int(k), int(ef), excluded)
        if single:
            return SearchResult(ids[0], dist[0])
        return SearchResult(ids, dist)

    def remove(self, ids: Any) -> Removed:
        """Removes ids from every later search at once; unknown ids are reported, not fatal."""
        removed, missing = self._index.remove(_as_ids(ids))
        return Removed(int(removed), missing)

    def compact(self) -> int:
        """Repairs the graph around removed items now; returns how many slots were freed."""
        return int(self._index.compact())

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the index atomically (temporary file, fsync, rename)."""
        self._index.save(os.fspath(path))

    def stats(self) -> dict[str, Any]:
        """live, slots, tombstones, free_slots, levels, memory_bytes, isa."""
        return dict(self._index.stats())

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, int | np.integer) and 0 <= int(item_id) < MISSING_ID and bool(
            self._index.contains(int(item_id)))

    @property
    def core(self) -> Any:
        """The core index (``_core.ann.Index``), for the native feed."""
        return self._index

    def __len__(self) -> int:
        return int(len(self._index))

    @property
    def dims(self) -> int:
        return int(self._index.dims)

    @property
    def metric(self) -> str:
        return str(self._index.metric)

    @property
    def dtype(self) -> str:
        return str(self._index.dtype)

    @property
    def M(self) -> int:  # noqa: N802 - the conventional HNSW name
        return int(self._index.M)

    @property
    def ef_construction(self) -> int:
        return int(self._index.ef_construction)

    @property
    def rerank(self) -> bool:
        return bool(self._index.rerank)

    def __repr__(self) -> str:
        return (f"Index(dims={self.dims}, metric={self.metric!r}, dtype={self.dtype!r}, "
                f"M={self.M}, ef_construction={self.ef_construction}, len={len(self)})")
