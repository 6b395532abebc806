"""recserve.train.movielens: the MovieLens-100K log (needs ../shared/data beside the repo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recserve.train.labels import HEADS
from recserve.train.log import Event, read_log
from recserve.train.movielens import RATINGS, VECTORS, pca, write_movielens_log
from recserve.train.replay import replay

#: ../shared/data beside the repository root (this file is tests/python/train/…).
SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"

needs_data = pytest.mark.skipif(
    not (SHARED_DATA / RATINGS).exists() or not (SHARED_DATA / VECTORS).exists(),
    reason=f"MovieLens-100K and its MiniLM vectors not found under {SHARED_DATA}",
)


@needs_data
def test_ratings_become_outcomes_in_time_order(tmp_path: Path) -> None:
    summary = write_movielens_log(tmp_path, data_dir=SHARED_DATA, max_ratings=3000)
    assert summary.impressions == 3000
    assert summary.items == 1682
    ratings = np.loadtxt(SHARED_DATA / RATINGS, dtype=np.int64, delimiter="\t")
    ratings = ratings[np.lexsort((ratings[:, 1], ratings[:, 0], ratings[:, 3]))][:3000]
    rating_of = {(f"u{u}", i, t): r for u, i, r, t in ratings.tolist()}

    data = replay(read_log(tmp_path))
    assert len(data) == 3000
    assert data.rows.shape[1] == 211
    assert np.all(np.diff(data.ts) >= 0)
    # Events follow their rating by 1 s (plus 1 ms per position): recover each rating's time.
    rated_at = {
        (r.user, r.item): int(r.ts - 1.0)
        for r in reversed(read_log(tmp_path).records)
        if isinstance(r, Event)
    }
    stars = np.array(
        [
            rating_of[(user, int(item), rated_at[(user, int(item))])]
            for user, item in zip(data.user, data.item, strict=True)
        ]
    )
    label = {head: data.labels[:, k] for k, head in enumerate(HEADS)}
    np.testing.assert_array_equal(label["complete"], stars >= 4)
    np.testing.assert_array_equal(label["like"], stars == 5)
    np.testing.assert_array_equal(label["skip"], stars <= 2)
    np.testing.assert_allclose(label["watch_frac"][stars == 3], 0.5, atol=1e-4)
    assert label["share"].sum() == label["follow"].sum() == 0


@needs_data
def test_catalogue_holds_64_dim_unit_vectors_from_minilm(tmp_path: Path) -> None:
    write_movielens_log(tmp_path, data_dir=SHARED_DATA, max_ratings=10)
    catalog = read_log(tmp_path).catalog
    assert catalog.vector.shape == (1682, 64)
    np.testing.assert_allclose(np.linalg.norm(catalog.vector, axis=1), 1.0, rtol=1e-5)
    assert catalog.created_at[0] == 788918400.0  # Toy Story: released 01-Jan-1995 (UTC)


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="MovieLens-100K input missing"):
        write_movielens_log(tmp_path / "log", data_dir=tmp_path)


def test_pca_orders_components_by_variance_with_fixed_signs() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 10)) * np.arange(10, 0, -1)
    reduced = pca(x, 3)
    variances = reduced.var(axis=0)
    assert variances[0] > variances[1] > variances[2]
    np.testing.assert_array_equal(pca(x, 3), reduced)
    flipped = pca(-x, 3)  # the sign rule holds for the components, not the data
    np.testing.assert_allclose(np.abs(flipped), np.abs(reduced), rtol=1e-4, atol=1e-4)
