import numpy as np

from recserve.regions import Regions, spherical_kmeans, thompson


def _blobs(seed: int = 0, per: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.eye(8, dtype=np.float32)[:4] * 3
    labels = np.repeat(np.arange(4), per)
    x = centres[labels] + rng.normal(scale=0.3, size=(4 * per, 8)).astype(np.float32)
    return x, labels


def test_kmeans_finds_one_centroid_per_blob():
    x, labels = _blobs()
    c = spherical_kmeans(x, 4, seed=0)
    assigned = np.argmax(x @ c.T, axis=1)
    # each blob maps to one centroid and each centroid to one blob
    pairs = {(int(a), int(b)) for a, b in zip(labels, assigned, strict=True)}
    assert len(pairs) == 4
    assert np.allclose(np.linalg.norm(c, axis=1), 1.0, atol=1e-5)


def test_kmeans_is_seeded_and_copes_with_fewer_rows_than_k():
    x, _ = _blobs()
    assert np.array_equal(spherical_kmeans(x, 4, seed=3), spherical_kmeans(x, 4, seed=3))
    assert len(spherical_kmeans(x[:2], 16)) == 2
    assert spherical_kmeans(np.zeros((5, 8)), 4).shape == (0, 8)


def test_regions_refit_only_when_the_catalogue_moved():
    x, _ = _blobs()
    keys = np.arange(1, len(x) + 1, dtype=np.uint64)
    calls = []

    def vectors_of(k: np.ndarray) -> np.ndarray:
        calls.append(len(k))
        return x[(k - 1).astype(np.int64)]

    regions = Regions(4, seed=0)
    assert regions.refresh(keys, vectors_of)
    assert not regions.refresh(keys[:-5], vectors_of)  # 5 of 800 gone: under 10 %
    assert regions.refresh(keys[:600], vectors_of)  # a quarter gone: refit
    assert calls == [800, 600]


def test_central_items_span_every_region():
    x, labels = _blobs()
    keys = np.arange(1, len(x) + 1, dtype=np.uint64)
    regions = Regions(4, seed=0)
    regions.refresh(keys, lambda k: x[(k - 1).astype(np.int64)])
    picks = regions.sample_central(40, np.random.default_rng(0))
    assert len(picks) == 40
    assert set(labels[(picks - 1).astype(np.int64)].tolist()) == {0, 1, 2, 3}


def test_thompson_draws_follow_hits_and_misses():
    x, _ = _blobs()
    keys = np.arange(1, len(x) + 1, dtype=np.uint64)
    regions = Regions(4, seed=0)
    regions.refresh(keys, lambda k: x[(k - 1).astype(np.int64)])
    liked = int(regions.assign(x[:1])[0])
    skipped = int(regions.assign(x[-1:])[0])
    met = np.array([liked] * 6 + [skipped] * 6)
    posterior = regions.posteriors(met, np.array([liked] * 6))
    rng = np.random.default_rng(0)
    candidates = np.array([liked] * 200 + [skipped] * 200 + [-1])
    draws = thompson(candidates, posterior, rng)
    assert draws[:200].mean() > 0.8
    assert draws[200:400].mean() < 0.2
    assert draws[400] == 0.0  # no region, no draw
    # no evidence: the prior's mean, with spread (pages span the regions)
    fresh = regions.posteriors(np.zeros(0, np.int64), np.zeros(0, np.int64))
    prior_draws = thompson(np.arange(4).repeat(100), fresh, rng)
    assert abs(prior_draws.mean() - 0.5) < 0.05
    assert prior_draws.std() > 0.2


def test_without_regions_nothing_is_assigned_or_drawn():
    regions = Regions(4)
    assert regions.assign(np.ones((3, 8))).tolist() == [-1, -1, -1]
    assert len(regions.posteriors(np.zeros(0, np.int64), np.zeros(0, np.int64))[0]) == 0
    assert len(regions.sample_central(10, np.random.default_rng(0))) == 0
