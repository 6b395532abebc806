"""recserve.embed: the embedding table from Python."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from recserve import embed


def constant_rows(ids: np.ndarray, dims: int) -> np.ndarray:
    return np.repeat(ids.astype(np.float32)[:, None], dims, axis=1)


def test_set_then_get_returns_rows_and_zeros_for_missing_ids() -> None:
    t = embed.Table(dims=8, capacity=1000)
    ids = np.arange(100, dtype=np.uint64) * 31
    rows = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)
    t.set(ids, rows)
    assert len(t) == 100
    vectors, found = t.get(np.append(ids, np.uint64(7)))
    np.testing.assert_array_equal(vectors[:100], rows)
    assert found[:100].all()
    assert not found[100]
    np.testing.assert_array_equal(vectors[100], np.zeros(8, np.float32))


def test_remove_counts_only_ids_that_had_rows() -> None:
    t = embed.Table(dims=2, capacity=100)
    t.set([1, 2, 3], np.ones((3, 2), np.float32))
    assert t.remove([2, 9]) == 1
    assert t.get([1, 2, 3]).found.tolist() == [True, False, True]


@pytest.mark.parametrize(
    ("ids", "vectors", "error", "match"),
    [
        ([1, 2], np.ones((2, 3), np.float32), ValueError, "4 columns"),
        ([1, 2], np.ones((3, 4), np.float32), ValueError, "same length"),
        ([1, 2], np.array([[1, 2, 3, 4], [1, np.nan, 3, 4]], np.float32), ValueError,
         "row 1, column 1"),
        (np.array([1, 2**64 - 1], np.uint64), np.ones((2, 4), np.float32), ValueError, "reserved"),
        ([-1], np.ones((1, 4), np.float32), ValueError, "non-negative"),
        (["a"], np.ones((1, 4), np.float32), TypeError, "integers"),
    ],
)
def test_bad_input_raises_and_writes_nothing(ids: object, vectors: np.ndarray,
                                             error: type[Exception], match: str) -> None:
    t = embed.Table(dims=4, capacity=100)
    with pytest.raises(error, match=match):
        t.set(ids, vectors)
    assert len(t) == 0


def test_bad_options_raise() -> None:
    with pytest.raises(ValueError, match="power of two"):
        embed.Table(dims=4, capacity=100, shards=3)
    with pytest.raises(ValueError, match="dims"):
        embed.Table(dims=0, capacity=100)


def test_full_table_evicts_the_least_recently_updated_row() -> None:
    t = embed.Table(dims=2, capacity=3, shards=1)
    t.set([1, 2, 3], np.ones((3, 2), np.float32))
    t.set([1], np.ones((1, 2), np.float32))
    t.set([4], np.ones((1, 2), np.float32))
    assert t.get([1, 2, 3, 4]).found.tolist() == [True, False, True, True]
    assert t.stats()["evictions"] == 1


def test_admission_waits_for_the_nth_set() -> None:
    t = embed.Table(dims=2, capacity=10, shards=1, admit_after=2)
    t.set([5], np.ones((1, 2), np.float32))
    assert not t.get([5]).found[0]
    t.set([5], np.ones((1, 2), np.float32))
    assert t.get([5]).found[0]
    assert t.stats()["not_admitted"] == 1


def test_rows_past_their_ttl_read_as_missing() -> None:
    t = embed.Table(dims=2, capacity=10, shards=1, ttl_seconds=0.3)  # wide margins for loaded CI
    t.set([1], np.ones((1, 2), np.float32))
    assert t.get([1]).found[0]
    time.sleep(0.7)
    assert not t.get([1]).found[0]
    assert t.expire() == 1
    assert len(t) == 0


def test_readers_in_threads_never_see_torn_rows_while_a_writer_writes() -> None:
    t = embed.Table(dims=64, capacity=2048, shards=4)
    stop = threading.Event()
    torn: list[int] = []

    def write() -> None:
        rng = np.random.default_rng(1)
        while not stop.is_set():
            ids = rng.integers(0, 4096, 64).astype(np.uint64)
            t.set(ids, constant_rows(ids, 64) + np.float32(rng.integers(0, 1000)))

    def read() -> None:
        rng = np.random.default_rng(2)
        while not stop.is_set():
            vectors, _ = t.get(rng.integers(0, 4096, 200).astype(np.uint64))
            torn.extend(np.flatnonzero((vectors != vectors[:, :1]).any(axis=1)).tolist())

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for th in threads:
        th.start()
    time.sleep(0.5)
    stop.set()
    for th in threads:
        th.join()
    assert torn == []
    assert t.stats()["evictions"] > 0
