"""User and item state: a collisionless embedding table, uint64 id -> float32[dims].

>>> t = Table(dims=64, capacity=1_000_000)
>>> t.set(ids, vectors)            # uint64[n], float32[n, 64]
>>> vecs, found = t.get(ids)       # float32[n, 64], bool[n]; missing rows are zeros
>>> t.remove(ids); len(t); t.stats()

Two ids never share a row. Reads never lock and never see a half-written row (each row has a
sequence lock), while writers update; writers are serialised per shard. Memory is bounded by
``capacity`` rows: a new id in a full shard evicts that shard's least recently updated row.
``ttl_seconds`` makes rows not updated for that long read as missing (``expire()`` frees them);
``admit_after=N`` gives a new id a row only on its N-th ``set`` (a count-min sketch counts).
Evictions and refused admissions are counted in ``stats()``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from recserve import _core
from recserve._arrays import as_id_rows, as_ids

__all__ = ["Lookup", "Table"]


class Lookup(NamedTuple):
    """Rows for the asked ids (zeros where missing) and which ids had one."""

    vectors: npt.NDArray[np.float32]
    found: npt.NDArray[np.bool_]


class Table:
    def __init__(self, dims: int, capacity: int, *, shards: int = 16, ttl_seconds: float = 0.0,
                 admit_after: int = 0) -> None:
        self._core = _core.embed.Table(dims, capacity, shards, ttl_seconds, admit_after)

    def set(self, ids: Any, vectors: Any) -> None:
        """Writes one row per id (an existing id's row is replaced). Checked first: wrong
        shape, NaN or infinity, or the reserved id 2^64-1 raise and write nothing."""
        id_array, vec_array = as_id_rows(ids, vectors)
        self._core.set(id_array, vec_array)

    def get(self, ids: Any) -> Lookup:
        vectors, found = self._core.get(as_ids(ids))
        return Lookup(vectors, found)

    def remove(self, ids: Any) -> int:
        """Removes the ids that have rows; returns how many did."""
        return self._core.remove(as_ids(ids))

    def expire(self) -> int:
        """Frees the rows past their TTL now (they already read as missing)."""
        return self._core.expire()

    def stats(self) -> dict[str, int]:
        """rows, capacity, evictions, not_admitted, memory_bytes."""
        return self._core.stats()

    def __len__(self) -> int:
        return len(self._core)

    @property
    def dims(self) -> int:
        return self._core.dims

    @property
    def capacity(self) -> int:
        return self._core.capacity
