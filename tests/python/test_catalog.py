"""recserve.catalog: items, embeddings in the index, takedowns, new versus returning items."""

from __future__ import annotations

import numpy as np
import pytest

from recserve.catalog import Catalog, Item
from recserve.ids import key_of

DIMS = 8


def items(n: int, start: int = 0) -> list[Item]:
    return [Item(f"v{i}", f"c{i % 3}", 10_000 + i) for i in range(start, start + n)]


def vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIMS)).astype(np.float32)


def test_upsert_reports_only_first_time_items_as_new() -> None:
    c = Catalog(DIMS)
    new = c.upsert(items(5), vectors(5, 0))
    assert sorted(new.tolist()) == sorted(key_of(f"v{i}") for i in range(5))
    again = c.upsert(items(7), vectors(7, 1))  # 5 updates, 2 new
    assert sorted(again.tolist()) == sorted([key_of("v5"), key_of("v6")])
    assert len(c) == 7
    assert c.get("v3") == Item("v3", "c0", 10_003)


def test_search_finds_the_nearest_item_and_honours_exclusions() -> None:
    c = Catalog(DIMS)
    v = vectors(50, 2)
    c.upsert(items(50), v)
    keys, distances = c.search(v[17], k=5)
    assert keys[0] == key_of("v17")
    assert distances[0] == pytest.approx(0.0, abs=1e-2)
    keys, _ = c.search(v[17], k=5, exclude=[key_of("v17")])
    assert key_of("v17") not in keys.tolist()


def test_a_takedown_is_gone_from_search_at_once_and_a_repost_restores_it() -> None:
    c = Catalog(DIMS)
    v = vectors(20, 3)
    c.upsert(items(20), v)
    assert c.take_down("v4")
    assert not c.take_down("v4")
    assert "v4" not in c
    keys, _ = c.search(v[4], k=20)
    assert key_of("v4") not in keys.tolist()
    returned = c.upsert(items(1, start=4), v[4:5])
    assert returned.size == 0  # a returning item, not a new one
    assert c.search(v[4], k=1)[0][0] == key_of("v4")


def test_bad_batches_change_nothing() -> None:
    c = Catalog(DIMS)
    c.upsert(items(2), vectors(2, 4))
    bad = vectors(3, 5)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="'v1'.*NaN"):
        c.upsert(items(3), bad)
    with pytest.raises(ValueError, match=r"shape \(3, 8\)"):
        c.upsert(items(3), vectors(3, 5)[:, :4])
    with pytest.raises(ValueError, match="twice"):
        c.upsert(items(1) + items(1), vectors(2, 6))
    with pytest.raises(ValueError, match="all zeros"):
        c.upsert(items(1, start=9), np.zeros((1, DIMS), np.float32))
    with pytest.raises(ValueError, match="duration_ms must be > 0"):
        Item("x", "c", 0)
    assert len(c) == 2
    assert "v2" not in c


def test_columns_find_rows_across_the_sorted_index_rebuild() -> None:
    c = Catalog(DIMS)
    for batch in range(5):  # 5 x 1,500 keys: the sorted index is rebuilt on the way
        c.upsert(
            [
                Item(f"v{i}", f"c{i % 7}", 1000, created_at=i * 1000)
                for i in range(batch * 1500, (batch + 1) * 1500)
            ],
            vectors(1500, batch),
        )
    ids = [f"v{i}" for i in (0, 1499, 4000, 7499)] + ["never-posted"]
    live, created, creators = c.columns(c.rows([key_of(i) for i in ids]))
    assert live.tolist() == [True, True, True, True, False]
    assert created.tolist()[:4] == [0.0, 1499.0, 4000.0, 7499.0]
    assert creators[-1] == -1
    assert creators[0] == c.creator_codes(["c0"])[0]
    assert creators[1] == c.creator_codes(["c1"])[0]  # 1499 % 7 == 1


def test_takedown_clears_the_live_column_and_a_repost_restores_it() -> None:
    c = Catalog(DIMS)
    c.upsert(items(3), vectors(3, 0))
    c.take_down("v1")
    live, _, _ = c.columns(c.rows([key_of("v0"), key_of("v1")]))
    assert live.tolist() == [True, False]
    c.upsert([items(3)[1]], vectors(1, 1))
    live, _, _ = c.columns(c.rows([key_of("v1")]))
    assert live.tolist() == [True]


def test_tags_index_follows_updates_and_takedowns() -> None:
    c = Catalog(DIMS)
    c.upsert([Item("a", "c", 1, ("cats",)), Item("b", "c", 1, ("cats", "dogs"))], vectors(2, 0))
    assert sorted(c.tagged(["cats"]).tolist()) == sorted([key_of("a"), key_of("b")])
    c.upsert([Item("a", "c", 1, ("dogs",))], vectors(1, 1))
    assert c.tagged(["cats"]).tolist() == [key_of("b")]
    c.take_down("b")
    assert c.tagged(["cats"]).tolist() == []
    assert c.tagged(["dogs"]).tolist() == [key_of("a")]
    assert c.tag_counts([key_of("a"), key_of("a")]) == {"dogs": 2}


def test_state_restores_metadata_and_remembers_taken_down_items() -> None:
    c = Catalog(DIMS)
    vecs = vectors(3, 0)
    c.upsert([Item(f"v{i}", "c", 1000, ("t",), 5, f"m{i}") for i in range(3)], vecs)
    c.take_down("v2")
    restored = Catalog(DIMS)
    restored.restore(
        c.state(),
        lambda keys: vecs[
            [
                int(
                    np.flatnonzero(
                        np.array([key_of(f"v{i}") for i in range(3)], dtype=np.uint64) == k
                    )[0]
                )
                for k in keys
            ]
        ],
    )
    assert restored.get("v1") == c.get("v1")
    assert "v2" not in restored
    assert len(restored.upsert([Item("v2", "c", 1000)], vecs[2:])) == 0  # returning, not new
