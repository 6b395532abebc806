"""The 64-bit keys that the core's tables use for the string ids of the API (users, items,
creators, events): the first 8 bytes of BLAKE2b, stable across processes and machines.

Two distinct strings share a key with probability about n² / 2^65 among n ids (3e-8 for a
million). 2^64 - 1 is reserved by the tables, so the one string that would hash to it takes
2^64 - 2 instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

__all__ = ["key_of", "keys_of"]

_RESERVED = (1 << 64) - 1


def key_of(text: str) -> int:
    if not isinstance(text, str):
        raise TypeError(f"ids are strings, got {type(text).__name__}")
    key = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
    return key - 1 if key == _RESERVED else key


def keys_of(texts: Iterable[str]) -> npt.NDArray[np.uint64]:
    return np.fromiter((key_of(t) for t in texts), dtype=np.uint64)
