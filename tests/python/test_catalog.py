"""recserve.catalog: items, embeddings in the index, takedowns, new versus returning items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recserve import ann
from recserve._core import CorruptFileError
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


def _grown_catalog() -> tuple[Catalog, dict[int, np.ndarray]]:
    """Tags, media keys and creators of every kind, takedowns, a re-post and a new vector."""
    c = Catalog(DIMS)
    posted = [
        Item(f"v{i}", f"c{i % 7}", 1000 + i, tuple(f"t{j}" for j in range(i % 3)), 10 * i,
             None if i % 2 else f"media/é{i}")
        for i in range(300)
    ]  # fmt: skip
    vecs = vectors(300, 4)
    c.upsert(posted[:200], vecs[:200])
    c.upsert(posted[200:], vecs[200:])
    c.take_down("v5")
    c.take_down("v6")
    c.upsert([Item("v6", "c-new", 5, ("x", "x"))], vectors(1, 5))  # taken down, then back
    by_key = {item.key: vecs[i] for i, item in enumerate(posted)}
    by_key[key_of("v6")] = vectors(1, 5)[0]
    return c, by_key


def _same_catalogue(a: Catalog, b: Catalog) -> None:
    assert list(a._items.items()) == list(b._items.items())  # the same items in the same order
    keys = np.array([key_of(f"v{i}") for i in range(305)], dtype=np.uint64)
    assert a.rows(keys).tolist() == b.rows(keys).tolist()
    live_a, *rest_a = a.columns(a.rows(keys))
    live_b, *rest_b = b.columns(b.rows(keys))
    assert live_a.tolist() == live_b.tolist()
    for x, y in zip(rest_a, rest_b, strict=True):
        assert np.where(live_a, x, 0).tolist() == np.where(live_b, y, 0).tolist()
    for tags in (["t1"], ["t2", "x"], ["none"]):
        assert sorted(a.tagged(tags).tolist()) == sorted(b.tagged(tags).tolist())
    assert (
        a.creator_codes(["c3", "c-new", "c?"]).tolist()
        == b.creator_codes(["c3", "c-new", "c?"]).tolist()
    )


def test_columns_bring_back_the_same_catalogue_and_the_saved_index_answers_the_same(
    tmp_path: Path,
) -> None:
    c, by_key = _grown_catalog()
    c.image().write(tmp_path / "catalog.bin")
    c.index.save(tmp_path / "index.rsi")
    restored = Catalog(DIMS)
    index = ann.Index.load(tmp_path / "index.rsi")
    assert restored.index_mismatch(index) is None
    restored.restore_columns(Catalog.read(tmp_path / "catalog.bin"), None, index)
    _same_catalogue(c, restored)
    for query in vectors(10, 6):
        found, again = c.search(query, k=10), restored.search(query, k=10)
        assert found[0].tolist() == again[0].tolist()
        assert found[1].tolist() == again[1].tolist()
    assert len(restored.upsert([Item("v5", "c", 1000)], vectors(1, 7))) == 0  # known, not new


def test_columns_without_an_index_build_it_from_the_vectors(tmp_path: Path) -> None:
    c, by_key = _grown_catalog()
    c.image().write(tmp_path / "catalog.bin")
    restored = Catalog(DIMS)
    restored.restore_columns(
        Catalog.read(tmp_path / "catalog.bin"),
        lambda keys: np.stack([by_key[k] for k in keys.tolist()]),
    )
    _same_catalogue(c, restored)
    for key in c.keys().tolist():
        assert restored.search(by_key[key], k=1)[0].tolist() == [key]
    assert key_of("v5") not in restored.search(by_key[key_of("v5")], k=10)[0].tolist()


def test_an_image_is_the_catalogue_when_it_was_taken(tmp_path: Path) -> None:
    c, _ = _grown_catalog()
    image = c.image()
    c.upsert([Item("late", "c", 1000)], vectors(1, 8))
    c.take_down("v7")
    image.write(tmp_path / "catalog.bin")
    restored = Catalog(DIMS)
    restored.restore_columns(Catalog.read(tmp_path / "catalog.bin"), None, c.index)
    assert restored.get("late") is None
    assert restored.get("v7") == Item("v7", "c0", 1007, ("t0",), 70, None)


def test_another_index_shape_does_not_fit() -> None:
    assert Catalog(DIMS).index_mismatch(ann.Index(DIMS + 1)) is not None
    assert Catalog(DIMS).index_mismatch(ann.Index(DIMS, dtype="float32")) is not None
    assert "M" in (Catalog(DIMS, M=12).index_mismatch(ann.Index(DIMS, M=16)) or "")


@pytest.mark.parametrize("where", [0, 20, 40, 200, -1])
def test_a_damaged_catalogue_file_is_refused(tmp_path: Path, where: int) -> None:
    c, _ = _grown_catalog()
    path = tmp_path / "catalog.bin"
    c.image().write(path)
    data = bytearray(path.read_bytes())
    data[where] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError):
        Catalog.read(path)
    path.write_bytes(bytes(data[:-1]))
    with pytest.raises(CorruptFileError):
        Catalog.read(path)


def test_a_file_without_item_rows_still_loads(tmp_path: Path) -> None:
    c, _ = _grown_catalog()
    columns = c.image().columns()
    del columns["row"]  # as the first files were written: rows are looked up by key
    restored = Catalog(DIMS)
    restored.restore_columns(columns, None, c.index)
    _same_catalogue(c, restored)
