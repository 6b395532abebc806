"""recserve.ids: stable 64-bit keys for string ids."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from recserve.ids import key_of, keys_of


def test_keys_are_stable_and_distinct() -> None:
    assert key_of("user-1") == key_of("user-1")
    digest = hashlib.blake2b(b"user-1", digest_size=8).digest()
    assert key_of("user-1") == int.from_bytes(digest, "little")  # the documented definition
    keys = keys_of(f"item-{i}" for i in range(100_000))
    assert keys.dtype == np.uint64
    assert len(np.unique(keys)) == 100_000
    assert (keys != np.uint64(2**64 - 1)).all()


def test_non_strings_are_refused() -> None:
    with pytest.raises(TypeError, match="ids are strings"):
        key_of(12)  # type: ignore[arg-type]
