"""The simulator: seeded, shaped like a short-video app, and users who behave as their hidden
taste says."""

from __future__ import annotations

import numpy as np

from recserve.sim.catalog import SimCatalog, find_kuairand
from recserve.sim.users import make_users


def test_the_same_seed_gives_the_same_catalogue_and_users() -> None:
    a, b = SimCatalog(500, seed=3), SimCatalog(500, seed=3)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    np.testing.assert_array_equal(a.quality, b.quality)
    ua, ub = make_users(5, a, seed=1), make_users(5, b, seed=1)
    assert [u.react(a, 7).events for u in ua] == [u.react(b, 7).events for u in ub]


def test_embeddings_are_noisy_views_of_the_hidden_topics() -> None:
    catalog = SimCatalog(2_000, seed=0)
    assert catalog.embeddings.shape == (2_000, 32)
    np.testing.assert_allclose(np.linalg.norm(catalog.embeddings, axis=1), 1.0, rtol=1e-5)
    same_topic = [i for i in range(1, 2_000) if catalog.tags[i][0] == catalog.tags[0][0]]
    other = [i for i in range(1, 2_000) if catalog.tags[i][0] != catalog.tags[0][0]]
    near = catalog.embeddings[same_topic] @ catalog.embeddings[0]
    far = catalog.embeddings[other] @ catalog.embeddings[0]
    assert near.mean() > far.mean() + 0.3


def test_users_complete_what_they_like_and_skip_what_they_do_not() -> None:
    catalog = SimCatalog(3_000, seed=1)
    user = make_users(1, catalog, seed=2)[0]
    user.drift = 0.0  # hold the mood still: the items ranked below stay what they were
    expected = user.expected_completion(catalog, np.arange(3_000))
    best, worst = np.argsort(expected)[-200:], np.argsort(expected)[:200]
    good = np.mean([user.react(catalog, int(i)).completion for i in best])
    bad = np.mean([user.react(catalog, int(i)).completion for i in worst])
    assert good > 0.6 > 0.2 > bad
    skips = sum(
        any(kind == "skip" for kind, _ in user.react(catalog, int(i)).events) for i in worst
    )
    assert skips > 100


def test_new_items_arrive_with_fresh_hidden_quality() -> None:
    catalog = SimCatalog(300, seed=4)
    new = catalog.add_new(50, step=10)
    assert list(new) == list(range(300, 350))
    assert len(catalog) == 350
    assert catalog.embeddings.shape[0] == 350
    assert (catalog.created_step[new] == 10).all()
    assert (catalog.created_step[:300] == -1).all()  # the catalogue at the start
    assert catalog.items(new[:1], created_at=5)[0]["id"] == "v300"


def test_the_real_video_table_is_used_when_present() -> None:
    directory = find_kuairand()
    if directory is None:  # the package runs without ../shared; this only checks the reader
        catalog = SimCatalog(100, seed=0)
        assert catalog.source == "synthetic"
        return
    catalog = SimCatalog(1_000, seed=0, kuairand=directory)
    assert catalog.source == "KuaiRand-Pure videos"
    assert all(c.startswith("a") for c in catalog.creators)
    assert 1_000 <= int(np.median(catalog.durations_ms)) <= 300_000
