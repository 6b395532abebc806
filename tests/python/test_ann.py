"""recserve.ann.Index: recall against brute force, updates, removal, exclusion, persistence,
bad input, and searches running while a writer changes the index."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from conftest import brute_force, clustered, recall
from recserve import ann

Floats = npt.NDArray[np.float32]


def build(items: Floats, metric: str = "cosine", dtype: str = "int8", **kw: object) -> ann.Index:
    index = ann.Index(dims=items.shape[1], metric=metric, dtype=dtype, **kw)  # type: ignore[arg-type]
    index.add(np.arange(len(items)), items, threads=2)
    return index


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize(("dtype", "rerank"), [("float32", False), ("int8", False), ("int8", True)])
def test_recall_against_brute_force(items: Floats, queries: Floats, metric: str, dtype: str,
                                    rerank: bool) -> None:
    index = build(items, metric, dtype, rerank=rerank)
    found = index.search(queries, k=10, ef=128).ids
    # Inner product on unnormalised vectors is not a metric; graph indexes find it harder.
    bound = 0.9 if metric == "ip" else 0.95
    assert recall(found, brute_force(items, queries, 10, metric)) >= bound


def test_distances_follow_the_documented_definitions(items: Floats, queries: Floats) -> None:
    q = queries[0]
    for metric in ("cosine", "ip", "l2"):
        ids, dist = build(items[:500], metric, "float32").search(q, k=5, ef=64)
        x = items[ids.astype(np.int64)]
        if metric == "cosine":
            expected = 1 - x @ q / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
        elif metric == "ip":
            expected = 1 - x @ q
        else:
            expected = ((x - q) ** 2).sum(axis=1)
        np.testing.assert_allclose(dist, expected, rtol=1e-4, atol=1e-4)
        assert (np.diff(dist) >= 0).all()


def test_single_query_gives_one_row_and_batch_gives_a_matrix(items: Floats,
                                                              queries: Floats) -> None:
    index = build(items[:300])
    one = index.search(queries[0], k=7)
    many = index.search(queries[:3], k=7)
    assert one.ids.shape == (7,)
    assert one.distances.dtype == np.float32
    assert many.ids.shape == (3, 7)
    assert many.ids.dtype == np.uint64
    np.testing.assert_array_equal(one.ids, many.ids[0])


def test_adding_an_existing_id_updates_its_vector(items: Floats) -> None:
    index = build(items[:1000])
    index.add([5], items[900])
    assert len(index) == 1000
    ids, dist = index.search(items[900], k=2, ef=64)
    assert set(ids.tolist()) == {5, 900}
    assert dist[0] == pytest.approx(0.0, abs=1e-2)
    assert 5 not in index.search(items[5], k=10, ef=64).ids.tolist()[:1]


def test_removed_ids_are_never_returned(items: Floats, queries: Floats) -> None:
    index = build(items[:2000], compact_threshold=0.0)
    gone = np.random.default_rng(3).choice(2000, 400, replace=False)
    assert index.remove(gone).removed == 400
    found = index.search(queries, k=50, ef=100).ids
    assert not set(found.ravel().tolist()) & set(gone.tolist())
    assert len(index) == 1600
    assert index.stats()["tombstones"] == 400


def test_removing_unknown_ids_is_reported_not_fatal(items: Floats) -> None:
    index = build(items[:100])
    removed, missing = index.remove([3, 12345, 3])
    assert removed == 1
    assert sorted(missing.tolist()) == [3, 12345]


def test_recall_holds_after_removing_ten_percent_and_compacting(items: Floats,
                                                                 queries: Floats) -> None:
    index = build(items, compact_threshold=0.0)
    gone = np.random.default_rng(4).choice(len(items), len(items) // 10, replace=False)
    index.remove(gone)
    assert index.compact() == len(gone)
    keep = np.setdiff1d(np.arange(len(items)), gone)
    truth = keep[brute_force(items[keep], queries, 10, "cosine")]
    assert recall(index.search(queries, k=10, ef=128).ids, truth) >= 0.95
    assert index.stats()["free_slots"] == len(gone)


def test_freed_slots_are_reused_by_later_adds(items: Floats) -> None:
    index = build(items[:1000], compact_threshold=0.0)
    index.remove(np.arange(200))
    index.compact()
    index.add(np.arange(5000, 5200), items[1000:1200])
    stats = index.stats()
    assert stats["slots"] == 1000
    assert stats["free_slots"] == 0
    assert len(index) == 1000


def test_recall_survives_heavy_churn(items: Floats, queries: Floats) -> None:
    rng = np.random.default_rng(5)
    index = ann.Index(dims=32, compact_threshold=0.05)
    pool = clustered(8000, 32, seed=6)
    live = np.arange(2000)
    index.add(live, pool[live])
    next_id = 2000
    for _ in range(5):
        gone = rng.choice(live, 400, replace=False)
        index.remove(gone)
        fresh = np.arange(next_id, next_id + 400)
        next_id += 400
        index.add(fresh, pool[fresh])
        live = np.concatenate([np.setdiff1d(live, gone), fresh])
    index.compact()
    truth = live[brute_force(pool[live], queries, 10, "cosine")]
    assert recall(index.search(queries, k=10, ef=128).ids, truth) >= 0.95


def test_exclude_is_never_returned_and_k_results_still_come_back(items: Floats,
                                                                  queries: Floats) -> None:
    index = build(items)
    rng = np.random.default_rng(7)
    for q in queries[:20]:
        excluded = rng.choice(len(items), int(0.3 * len(items)), replace=False)
        ids, _ = index.search(q, k=10, ef=64, exclude=excluded)
        assert ann.MISSING_ID not in ids.tolist()
        assert not set(ids.tolist()) & set(excluded.tolist())


def test_exclude_of_almost_everything_still_finds_the_rest(items: Floats) -> None:
    index = build(items[:1000])
    allowed = [17, 444, 999]
    excluded = np.setdiff1d(np.arange(1000), allowed)
    ids, dist = index.search(items[0], k=5, exclude=excluded)
    assert sorted(ids[:3].tolist()) == allowed
    assert ids[3:].tolist() == [ann.MISSING_ID] * 2
    assert np.isinf(dist[3:]).all()


def test_missing_results_are_the_sentinel_id_with_infinite_distance(items: Floats) -> None:
    empty = ann.Index(dims=32)
    ids, dist = empty.search(items[0], k=3)
    assert ids.tolist() == [ann.MISSING_ID] * 3
    assert np.isinf(dist).all()
    small = build(items[:2])
    ids, dist = small.search(items[0], k=4)
    assert sorted(ids[:2].tolist()) == [0, 1]
    assert ids[2:].tolist() == [ann.MISSING_ID] * 2


def test_properties_and_stats(items: Floats) -> None:
    index = build(items[:500], "l2", "int8", M=8, ef_construction=64)
    assert (index.dims, index.metric, index.dtype, index.M, index.ef_construction) == (
        32, "l2", "int8", 8, 64)
    assert len(index) == 500
    assert 7 in index
    assert 5000 not in index
    stats = index.stats()
    assert stats["live"] == 500
    assert stats["levels"] >= 1
    assert stats["memory_bytes"] > 500 * 32


def test_int8_takes_less_memory_than_float32(items: Floats) -> None:
    f32 = build(items, dtype="float32").stats()["memory_bytes"]
    i8 = build(items, dtype="int8").stats()["memory_bytes"]
    assert i8 < 0.8 * f32


# ---- persistence -------------------------------------------------------------------------

@pytest.mark.parametrize(("dtype", "rerank"), [("float32", False), ("int8", False), ("int8", True)])
def test_save_and_load_round_trip(tmp_path: Path, items: Floats, queries: Floats, dtype: str,
                                  rerank: bool) -> None:
    index = build(items[:1500], "cosine", dtype, rerank=rerank, compact_threshold=0.0)
    index.remove(np.arange(0, 1500, 7))
    index.compact()
    index.remove(np.arange(1, 1500, 11))  # tombstones that were not compacted
    path = tmp_path / "items.rsi"
    index.save(path)
    loaded = ann.Index.load(path)
    before, after = index.search(queries, k=10, ef=64), loaded.search(queries, k=10, ef=64)
    np.testing.assert_array_equal(before.ids, after.ids)
    np.testing.assert_array_equal(before.distances, after.distances)
    assert (len(loaded), loaded.dtype, loaded.rerank) == (len(index), dtype, rerank)
    loaded.add([99999], items[1600])
    assert loaded.search(items[1600], k=1).ids[0] == 99999


def test_truncated_file_raises_a_clear_error(tmp_path: Path, items: Floats) -> None:
    path = tmp_path / "items.rsi"
    build(items[:300]).save(path)
    data = path.read_bytes()
    for cut in [0, 10, 63, 64, 65, len(data) // 2, len(data) - 1]:
        path.write_bytes(data[:cut])
        with pytest.raises(ann.CorruptFileError, match="truncated|corrupt|magic"):
            ann.Index.load(path)


def test_corrupt_file_is_detected_by_checksum(tmp_path: Path, items: Floats) -> None:
    path = tmp_path / "items.rsi"
    build(items[:300]).save(path)
    data = bytearray(path.read_bytes())
    for pos in np.random.default_rng(8).choice(len(data), 30, replace=False):
        flipped = bytearray(data)
        flipped[pos] ^= 0x40
        path.write_bytes(bytes(flipped))
        with pytest.raises(ann.CorruptFileError):
            ann.Index.load(path)


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ann.Index.load(tmp_path / "nope.rsi")


# ---- bad input -----------------------------------------------------------------------------

def test_bad_constructor_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="metric"):
        ann.Index(dims=8, metric="hamming")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dtype"):
        ann.Index(dims=8, dtype="float16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dims"):
        ann.Index(dims=0)
    with pytest.raises(ValueError, match="M must"):
        ann.Index(dims=8, M=1)
    with pytest.raises(ValueError, match="rerank"):
        ann.Index(dims=8, dtype="float32", rerank=True)
    with pytest.raises(TypeError, match="dims"):
        ann.Index(dims=8.5)  # type: ignore[arg-type]


def test_wrong_dims_are_rejected_and_change_nothing(items: Floats) -> None:
    index = build(items[:10])
    with pytest.raises(ValueError, match=r"shape \(n, 32\), got \(2, 33\)"):
        index.add([100, 101], np.zeros((2, 33), dtype=np.float32))
    with pytest.raises(ValueError, match=r"shape \(n, 32\)"):
        index.search(np.zeros(31, dtype=np.float32))
    with pytest.raises(ValueError, match="same length"):
        index.add([100, 101, 102], np.zeros((2, 32), dtype=np.float32))
    assert len(index) == 10


def test_non_finite_values_are_rejected_and_change_nothing(items: Floats) -> None:
    index = build(items[:10])
    batch = items[10:13].copy()
    batch[2, 5] = np.nan
    with pytest.raises(ValueError, match=r"vectors\[2\].*NaN"):
        index.add([100, 101, 102], batch)
    assert len(index) == 10
    assert 100 not in index
    query = items[0].copy()
    query[0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        index.search(query)


def test_duplicate_ids_in_one_call_are_rejected(items: Floats) -> None:
    index = build(items[:10])
    with pytest.raises(ValueError, match="appears twice"):
        index.add([100, 101, 100], items[10:13])
    assert len(index) == 10
    assert 101 not in index


def test_wrong_dtypes_and_bad_ids_are_rejected(items: Floats) -> None:
    index = build(items[:10])
    with pytest.raises(TypeError, match="floating point"):
        index.add([100], np.array([["a"] * 32]))
    with pytest.raises(TypeError, match="integers"):
        index.add([1.5], items[:1])
    with pytest.raises(ValueError, match="non-negative"):
        index.add([-1], items[:1])
    with pytest.raises(ValueError, match="reserved"):
        index.add([ann.MISSING_ID], items[:1])
    with pytest.raises(ValueError, match="k must"):
        index.search(items[0], k=0)
    with pytest.raises(ValueError, match="ef must"):
        index.search(items[0], ef=0)


# ---- concurrency -----------------------------------------------------------------------------

def test_searches_run_while_a_writer_adds_and_removes() -> None:
    pool = clustered(6000, 32, seed=9)
    index = ann.Index(dims=32, compact_threshold=0.05)
    index.add(np.arange(2000), pool[:2000])
    removed: set[int] = set()
    lock = threading.Lock()
    errors: list[str] = []
    done = threading.Event()

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not done.is_set():
            with lock:
                gone_before = set(removed)
            ids, dist = index.search(pool[rng.integers(0, 6000)], k=20, ef=64)
            valid = ids[ids != ann.MISSING_ID].tolist()
            if set(valid) & gone_before:
                errors.append(f"removed ids returned: {set(valid) & gone_before}")
            if any(i >= 6000 for i in valid) or not (np.diff(dist) >= 0).all():
                errors.append("invalid ids or unsorted distances")

    readers = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    for t in readers:
        t.start()
    try:
        for step in range(20):
            fresh = np.arange(2000 + step * 200, 2200 + step * 200)
            index.add(fresh, pool[fresh], threads=1)
            gone = np.arange(step * 80, step * 80 + 80)
            index.remove(gone)
            with lock:
                removed.update(gone.tolist())
            if step % 5 == 4:
                index.compact()
    finally:
        done.set()
        for t in readers:
            t.join()
    assert errors == []
    assert len(index) == 6000 - 1600
