"""recserve.evaluate.peers and tuning: item-to-item co-occurrence, ALS with fold-in, their
pages in the replay, and settings chosen before the split only."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np
import pytest
from test_eval_replay import catalogue, log

from recserve.evaluate.inputs import Catalogue
from recserve.evaluate.peer_replay import PeerPolicies, Popularity, replay_peers
from recserve.evaluate.peers import ALSFoldIn, CoOccurrence, top_unseen
from recserve.evaluate.replay import replay
from recserve.evaluate.scoring import in_time_order, split_time
from recserve.evaluate.tuning import choose_peer_settings
from recserve.ingest.event_row import EventRow


# ---- CoOccurrence ---------------------------------------------------------------------------
def test_cooccurrence_recommends_the_co_engaged_item() -> None:
    cf = CoOccurrence(5, normalize="none")
    for user in ("a", "b"):
        cf.engaged(user, 0)
        cf.engaged(user, 3)
    cf.engaged("a", 1)
    cf.engaged("c", 0)  # c engaged only with 0: 3 was co-engaged with it twice, 1 once
    assert cf.scores("c").tolist() == [0.0, 1.0, 0.0, 2.0, 0.0]
    assert top_unseen(cf.scores("c"), [0], k=2) == [3, 1]
    assert not cf.has_history("nobody")
    assert cf.scores("nobody").tolist() == [0.0] * 5


def test_an_engagement_counts_once_per_user_and_item() -> None:
    cf = CoOccurrence(3, normalize="none")
    for _ in range(3):
        cf.engaged("a", 0)
        cf.engaged("a", 1)
    cf.engaged("b", 0)
    assert cf.scores("b").tolist() == [0.0, 1.0, 0.0]


def _dense_reference(
    log: list[tuple[str, int]], n: int, user: str, decay: float, window: int | None, norm: str
) -> np.ndarray:
    """scores from a dense co-occurrence matrix built from the whole log (the definition)."""
    history: dict[str, list[int]] = {}
    for u, i in log:
        if i not in history.setdefault(u, []):
            history[u].append(i)
    x = np.zeros((len(history), n))
    for row, items in enumerate(history.values()):
        x[row, items] = 1.0
    c = x.T @ x
    np.fill_diagonal(c, 0.0)
    if norm == "cosine":
        counts = np.maximum(x.sum(axis=0), 1.0)
        c = c / np.sqrt(np.outer(counts, counts))
    recent = history[user][::-1][:window]
    return sum(decay**age * c[h] for age, h in enumerate(recent))  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("decay", "window", "norm"),
    [(1.0, None, "none"), (0.8, None, "cosine"), (0.5, 3, "none"), (0.9, 1, "cosine")],
)
def test_cooccurrence_scores_match_the_dense_definition(
    decay: float, window: int | None, norm: Any
) -> None:
    rng = np.random.default_rng(7)
    n = 40
    events = [(f"u{rng.integers(12)}", int(rng.integers(n))) for _ in range(1500)]
    cf = CoOccurrence(n, decay=decay, window=window, normalize=norm)
    for user, item in events:
        cf.engaged(user, item)
    # without merging, a row would hold every co-engagement (hundreds here)
    assert max(len(row.index) for row in cf._c.rows) <= 2 * n
    for user in sorted({u for u, _ in events}):
        expected = _dense_reference(events, n, user, decay, window, norm)
        np.testing.assert_allclose(cf.scores(user), expected, rtol=1e-5, atol=1e-6)


def test_views_share_the_counts() -> None:
    base = CoOccurrence(4, normalize="none")
    view = base.with_settings(decay=1.0, window=1, normalize="none")
    base.engaged("a", 0)
    base.engaged("a", 1)
    view.engaged("b", 2)
    view.engaged("b", 1)  # b's newest: 1, co-engaged with 0 (a) and 2 (b)
    assert base.scores("b").tolist() == pytest.approx([1.0, 0.8, 1.0, 0.0])  # row 1 + 0.8 row 2
    assert view.scores("b").tolist() == [1.0, 0.0, 1.0, 0.0]  # row 1 only
    assert view.settings() == {"decay": 1.0, "window": 1, "normalize": "none"}
    both = base.scores_of_views("b", [view, base])  # each row read once for both
    assert [x.tolist() for x in both] == [view.scores("b").tolist(), base.scores("b").tolist()]
    with pytest.raises(ValueError, match="share"):
        base.scores_of_views("b", [CoOccurrence(4)])


def test_bad_cooccurrence_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="decay"):
        CoOccurrence(3, decay=0.0)
    with pytest.raises(ValueError, match="window"):
        CoOccurrence(3, window=0)
    with pytest.raises(ValueError, match="normalize"):
        CoOccurrence(3, normalize="l2")  # type: ignore[arg-type]
    with pytest.raises(IndexError):
        CoOccurrence(3).engaged("a", 3)


# ---- ALS ------------------------------------------------------------------------------------
def _blocks(users: int = 20, items: int = 12) -> tuple[list[str], list[int]]:
    """Two tastes: even users engage with items 0..5, odd users with 6..11 (most of them)."""
    rng = np.random.default_rng(3)
    us, rows = [], []
    for u in range(users):
        block = range(0, items // 2) if u % 2 == 0 else range(items // 2, items)
        for i in block:
            if rng.random() < 0.8:
                us.append(f"u{u}")
                rows.append(i)
    return us, rows


def test_als_fold_in_places_a_new_user_in_their_block() -> None:
    us, rows = _blocks()
    als = ALSFoldIn(12, factors=2, regularization=0.1, alpha=10.0, iterations=15, seed=0)
    als.fit(us, rows, [1.0] * len(rows))
    assert not als.has_history("new")
    als.engaged("new", 7)
    als.engaged("new", 9)
    assert als.has_history("new")
    page = top_unseen(als.scores("new"), [7, 9], k=4)
    assert set(page) <= {6, 8, 10, 11}


def test_als_fold_in_is_the_closed_form_least_squares() -> None:
    us, rows = _blocks()
    als = ALSFoldIn(12, factors=3, regularization=0.5, alpha=4.0, iterations=5, seed=1)
    als.fit(us, rows, [1.0] * len(rows))
    als.engaged("u0", 11)  # a fitted user: the fold-in refits over their whole history
    als.engaged("u0", 10)  # then updates what it built by the new item
    y = als.item_factors
    history = sorted({i for u, i in zip(us, rows, strict=True) if u == "u0"} | {10, 11})
    assert not {10, 11} & set(rows[: us.index("u1")])  # both new to u0 (u0's rows come first)
    c = np.zeros(12)
    c[history] = 4.0
    a = y.T @ y + 0.5 * np.eye(3) + (y * c[:, None]).T @ y
    b = ((1.0 + c) * (c > 0)) @ y
    np.testing.assert_allclose(als.user_factors["u0"], np.linalg.solve(a, b), rtol=1e-8)


def test_als_item_factors_solve_their_normal_equations() -> None:
    # After the last pass the item factors are the exact least squares given the user factors:
    # checks the batched (padded) solves against the per-item formula.
    us, rows = _blocks(users=30)
    us += ["heavy"] * 12  # one user with every item: rows of several widths
    rows += list(range(12))
    als = ALSFoldIn(14, factors=5, regularization=0.3, alpha=2.0, iterations=3, seed=2)
    als.fit(us, rows, [1.0] * (len(rows) - 1) + [3.0])
    users = list(dict.fromkeys(us))
    x = np.array([als.user_factors[u] for u in users])
    for item in range(14):
        engaged = {u: w for u, i, w in zip(us, rows, [1.0] * (len(rows) - 1) + [3.0], strict=True)
                   if i == item}  # fmt: skip
        if not engaged:
            assert not als.item_factors[item].any()  # no data, no factor: scores 0
            continue
        c = np.array([2.0 * engaged.get(u, 0.0) for u in users])
        a = x.T @ x + 0.3 * np.eye(5) + (x * c[:, None]).T @ x
        b = ((1.0 + c) * (c > 0)) @ x
        np.testing.assert_allclose(als.item_factors[item], np.linalg.solve(a, b), rtol=1e-4)


def test_als_is_seeded() -> None:
    us, rows = _blocks()
    a = ALSFoldIn(12, factors=4, seed=5).fit(us, rows, [1.0] * len(rows))
    b = ALSFoldIn(12, factors=4, seed=5).fit(us, rows, [1.0] * len(rows))
    np.testing.assert_array_equal(a.item_factors, b.item_factors)


# ---- pages ----------------------------------------------------------------------------------
def test_top_unseen_breaks_ties_by_the_tiebreak_then_catalogue_order() -> None:
    scores = np.array([1.0, 3.0, 1.0, 1.0, 3.0, 0.0], dtype=np.float32)
    assert top_unseen(scores, [], 3) == [1, 4, 0]
    assert top_unseen(scores, [1], 3) == [4, 0, 2]
    tiebreak = np.array([0.1, 0.0, 0.5, 0.3, 0.9, 2.0])
    assert top_unseen(scores, [], 4, tiebreak) == [4, 1, 2, 3]
    assert top_unseen(scores, [0, 1, 2, 3, 4], 3) == [5]
    assert top_unseen(scores, list(range(6)), 3) == []


def test_a_user_with_no_engagement_gets_popularity() -> None:
    cat = catalogue(n=6)
    popularity = Popularity(cat)
    peers = PeerPolicies(cat, popularity, {"itemcf": CoOccurrence(6)}, {"als": ALSFoldIn(6)})
    for user in ("a", "b"):
        for item in ("v4", "v2"):
            peers.met(user, item)
            popularity.engaged(item)
            peers.engaged(user, item)
    peers.at_split()
    peers.met("new", "v0")  # seen, not engaged
    pages = peers.pages("new", 3)
    assert pages["itemcf"] == pages["als"] == popularity.page({"v0"}, 3) == ["v2", "v4", "v1"]
    peers.engaged("new", "v0")  # now known: their own pages
    assert peers.pages("new", 3)["itemcf"] == ["v2", "v4", "v1"]  # v0 co-engaged with nothing
    peers.met("c", "v4")
    peers.engaged("c", "v4")
    assert peers.pages("c", 2)["itemcf"] == ["v2", "v0"]  # v2: co-engaged with v4


def _fixed_peers() -> dict[str, Any]:
    return {
        "itemcf": {"decay": 0.8, "window": None, "normalize": "cosine"},
        "als": {"factors": 4, "regularization": 0.1, "alpha": 10.0, "iterations": 5},
    }


def test_the_replay_scores_the_peers_as_the_light_replay_does() -> None:
    cat = catalogue()
    events = log(cat, users=16, per_user=25)
    result = replay(events, cat, split=0.5, peers=_fixed_peers())
    assert result.settings["peers"] == _fixed_peers()
    settings = _fixed_peers()
    n = len(cat.items)
    plan, scores = replay_peers(
        in_time_order(events),
        cat,
        itemcf={"itemcf": CoOccurrence(n, **settings["itemcf"])},
        als={"als": ALSFoldIn(n, **settings["als"], seed=0)},
        split=0.5,
    )
    assert plan.split_ms == result.split_ms
    for name in ("itemcf", "als"):
        assert result.policies[name].evaluated == result.policies["realtime"].evaluated > 0
        assert result.policies[name].to_dict() == scores[name].to_dict()
    out = result.to_dict()
    assert {"itemcf", "als"} <= set(out)
    assert {"itemcf", "als"} <= set(out["returning_users"])
    # Users stick to one topic: the co-occurrence peer learns it, popularity cannot.
    assert result.policies["itemcf"].hits > result.policies["popularity"].hits


# ---- tuning ---------------------------------------------------------------------------------
def _corrupted_after(events: list[EventRow], split_ms: int) -> list[EventRow]:
    """Every outcome at or after the split flipped (full watches become fast skips and back)
    and every item moved: a different future, the same past."""
    out = []
    for e in events:
        if (e.ts or 0) >= split_ms:
            flipped = 1_000 if e.watch_ms == 20_000 else 20_000
            e = dataclasses.replace(
                e, watch_ms=flipped, item_id="v" + str((int(e.item_id[1:]) + 1) % 60)
            )
        out.append(e)
    return out


class _Tripwire(EventRow):
    """An event whose content must not be read (its time may be)."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("event_id", "user_id", "item_id", "type", "watch_ms", "duration_ms"):
            raise AssertionError(f"tuning read {name} of an event after the split")
        return super().__getattribute__(name)


def _choice(chosen: dict[str, Any]) -> dict[str, Any]:
    """What tuning chose and its validation scores, without how long it took."""
    return chosen | {"validation": chosen["validation"] | {"seconds": None}}


def test_tuning_never_reads_events_at_or_after_the_split() -> None:
    cat = catalogue()
    events = in_time_order(log(cat, users=24, per_user=30, seed=5))
    split_ms = split_time(events, 0.8)
    grids: dict[str, Any] = {
        "itemcf_grid": {"decay": (0.5, 1.0), "window": (1, None), "normalize": ("none",)},
        "als_grid": {"factors": (2, 8), "regularization": (0.1,), "alpha": (1.0, 40.0)},
    }
    chosen = choose_peer_settings(events, cat, split=0.8, **grids)
    assert chosen["validation"]["evaluated"] > 0
    assert chosen["validation"]["to_ts"] == split_ms
    assert chosen["validation"]["from_ts"] == split_time(
        [e for e in events if (e.ts or 0) < split_ms], 0.8
    )
    corrupted = _corrupted_after(events, split_ms)
    assert corrupted != events
    assert _choice(choose_peer_settings(corrupted, cat, split=0.8, **grids)) == _choice(chosen)
    wired = [e if (e.ts or 0) < split_ms else _Tripwire(**dataclasses.asdict(e)) for e in events]
    assert any(isinstance(e, _Tripwire) for e in wired)
    assert _choice(choose_peer_settings(wired, cat, split=0.8, **grids)) == _choice(chosen)


def test_tuning_picks_the_best_validation_score() -> None:
    cat = catalogue()
    events = in_time_order(log(cat, users=24, per_user=30, seed=5))
    grid = {"decay": (0.5, 1.0), "window": (1, 4, None), "normalize": ("none", "cosine")}
    chosen = choose_peer_settings(
        events, cat, split=0.8, itemcf_grid=grid,
        als_grid={"factors": (4,), "regularization": (0.1,), "alpha": (10.0,)},
    )  # fmt: skip
    before = [e for e in events if (e.ts or 0) < split_time(events, 0.8)]
    n = len(cat.items)
    settings = [dict(zip(grid, v, strict=True)) for v in itertools.product(*grid.values())]
    base = CoOccurrence(n)
    _, scores = replay_peers(
        before,
        cat,
        itemcf={f"s{i}": base.with_settings(**s) for i, s in enumerate(settings)},
        als={},
        split=0.8,
    )
    best = max((scores[f"s{i}"].hr, scores[f"s{i}"].ndcg) for i in range(len(settings)))
    picked = {key: chosen["itemcf"][key] for key in grid}
    index = settings.index(picked)
    assert (scores[f"s{index}"].hr, scores[f"s{index}"].ndcg) == best
    assert chosen["itemcf"]["validation"]["hits"] == scores[f"s{index}"].hits
    assert chosen["als"]["iterations"] == 10


def test_tuning_without_validation_engagements_keeps_the_defaults() -> None:
    cat: Catalogue = catalogue(n=5)
    rows = [
        EventRow("a", "u1", "v1", "like", ts=1),
        EventRow("b", "u1", "v2", "skip", ts=2),  # validation: from 2 on, nothing engaged
        EventRow("c", "u2", "v2", "like", ts=100),
    ]
    chosen = choose_peer_settings(rows, cat, split=0.5)
    assert chosen["itemcf"]["note"].startswith("no engagement")
    assert chosen["als"]["factors"] == 32
    result = replay(rows, cat, split=0.5)
    assert result.settings["peers"]["itemcf"]["decay"] == 0.8
    assert result.policies["als"].evaluated == 1
