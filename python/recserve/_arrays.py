"""Turning what callers pass into the arrays the bindings take (checked, contiguous)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["as_id_rows", "as_ids", "as_vectors"]


def as_ids(ids: Any, what: str = "ids") -> npt.NDArray[np.uint64]:
    if isinstance(ids, list | tuple) and all(type(i) is int for i in ids):
        # numpy would make a list of keys above 2^63 beside small ones float64 (and lossy).
        if any(i < 0 for i in ids):
            raise ValueError(f"{what} must be non-negative, got {min(ids)}")
        if any(i >= 1 << 64 for i in ids):
            raise ValueError(f"{what} must be below 2^64, got {max(ids)}")
        return np.array(ids, dtype=np.uint64)
    array = np.asarray(ids)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.size == 0:
        return np.empty(0, dtype=np.uint64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{what} must be integers, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{what} must be 1-dimensional, got shape {array.shape}")
    if array.dtype.kind == "i" and (array < 0).any():
        raise ValueError(f"{what} must be non-negative, got {int(array.min())}")
    return np.ascontiguousarray(array, dtype=np.uint64)


def as_vectors(vectors: Any, what: str) -> npt.NDArray[np.float32]:
    array = np.asarray(vectors)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{what} must be floating point numbers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32)


def as_id_rows(ids: Any, vectors: Any) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
    """ids and one row per id; a single vector with a single id counts as one row."""
    id_array = as_ids(ids)
    vec_array = as_vectors(vectors, "vectors")
    if vec_array.ndim == 1 and id_array.size == 1:
        vec_array = vec_array.reshape(1, -1)
    return id_array, vec_array
