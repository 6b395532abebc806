"""``recserve demo --grid`` at a tiny scale, and the world knobs it turns: pages of n, users
with no history, and the item-to-item peer."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recserve.cli import main
from recserve.sim import grid
from recserve.sim.backends import InProcessBackend
from recserve.sim.catalog import SimCatalog
from recserve.sim.grid import GRID_POLICIES, GridConfig, World, print_grid, run_grid
from recserve.sim.policies import EnginePolicy, ItemToItemPolicy, RandomPolicy
from recserve.sim.session import run_sessions
from recserve.sim.users import Reaction, SimUser, make_users

TINY: dict[str, Any] = dict(
    users=10,
    swipes=10,
    history=3,
    items=500,
    new_every=40,
    new_items=4,
    seed=5,
    worlds=(
        World("few topics, pages of 5, half cold", topics=10, page=5, cold=0.5),
        World("noisy, fast, one item a page", topics=30, noise=0.8, drift=0.2),
    ),
)


class _Recorder(RandomPolicy):
    """A random policy that writes down every page it served, every swipe and every history
    swipe it heard, in order."""

    def __init__(self, catalog: SimCatalog) -> None:
        super().__init__(catalog, seed=1)
        self.log: list[tuple[str, str, Any]] = []

    def history(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None:
        self.log.append(("history", user.user_id, item))
        super().history(user, item, reaction, ts_ms)

    def page(self, user: SimUser, now_ms: int, n: int) -> list[int]:
        items = super().page(user, now_ms, n)
        self.log.append(("page", user.user_id, items))
        return items

    def observe(self, user: SimUser, item: int, reaction: Reaction, ts_ms: int) -> None:
        self.log.append(("swipe", user.user_id, item))
        super().observe(user, item, reaction, ts_ms)


def test_a_tiny_grid_reports_every_policy_in_every_world_and_repeats(tmp_path: Path) -> None:
    config = GridConfig(**TINY)
    first = run_grid(config, tmp_path / "a", stream=io.StringIO())
    again = run_grid(config, tmp_path / "b", stream=io.StringIO())
    written = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert [w["world"]["name"] for w in written["worlds"]] == [w.name for w in TINY["worlds"]]
    for world in written["worlds"]:
        assert set(world["policies"]) == set(GRID_POLICIES)
        for policy in world["policies"].values():
            assert 0.0 <= policy["completion"]["6-10"] <= 1.0
        judged = world["judged"]["6-10"]
        assert judged["best_peer"] not in ("recserve", "oracle")
        assert judged["vs_oracle"] <= 1.0
    assert written["worlds"][0]["cold_users"] == 5
    assert set(written["averages"]) == {"6-10"}
    # The same seed, the same numbers: the engines run on the events' clock.
    assert [w["policies"] for w in first["worlds"]] == [w["policies"] for w in again["worlds"]]
    printed = io.StringIO()
    print_grid(first, printed)
    table = printed.getvalue()
    assert "item2item" in table
    assert "grid average" in table
    assert "few topics, pages of 5, half cold" in table


def test_the_cli_runs_the_grid_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(grid, "GridConfig", lambda **kw: GridConfig(**(TINY | kw)))
    out = tmp_path / "grid"
    assert main(["demo", "--grid", "--out", str(out), "--users", "6", "--swipes", "10"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["users"] == 6
    assert "recserve / oracle over swipes 6-10" in capsys.readouterr().out
    assert main(["demo", "--grid", "--driver", "http", "--out", str(out)]) == 2


@pytest.mark.parametrize("page_size", [1, 5])
def test_a_page_of_n_is_swiped_through_in_order_before_the_next_is_asked_for(
    page_size: int,
) -> None:
    catalog = SimCatalog(300, seed=2)
    users = make_users(3, catalog, seed=3)
    recorder = _Recorder(catalog)
    run_sessions(catalog, users, [recorder], swipes=10, history=2, new_items=0, seed=4,
                 page_size=page_size)
    for user in users:
        mine = [(kind, x) for kind, u, x in recorder.log if u == user.user_id and kind != "history"]
        pages = [x for kind, x in mine if kind == "page"]
        assert [len(p) for p in pages] == [page_size] * (10 // page_size)
        # page, then its swipes one by one in the page's order, then the next page
        expected: list[tuple[str, Any]] = []
        for p in pages:
            expected += [("page", p)] + [("swipe", item) for item in p]
        assert mine == expected


def test_the_engine_serves_a_page_of_n_per_request(tmp_path: Path) -> None:
    config = tmp_path / "engine.toml"
    config.write_text("dims = 32\nimpression_log = false\n[feed]\nprecompute = false\n")
    catalog = SimCatalog(400, seed=1)
    users = make_users(4, catalog, seed=2)
    engine = EnginePolicy("recserve", catalog, InProcessBackend(config, tmp_path / "e"),
                          frozen=False)
    try:
        result = run_sessions(catalog, users, [engine], swipes=10, history=2, new_items=0,
                              seed=3, page_size=5)
    finally:
        engine.close()
    assert len(engine.latency_s["feed"]) == 4 * 2  # two requests of 5 per user
    assert result.completion["recserve"].shape == (4, 10)
    assert sum(len(v) for v in engine.by_source.values()) == 40  # every slot was swiped


def test_cold_users_have_no_history() -> None:
    catalog = SimCatalog(300, seed=2)
    users = make_users(6, catalog, seed=3)
    recorder = _Recorder(catalog)
    run_sessions(catalog, users, [recorder], swipes=2, history=4, new_items=0, seed=4,
                 cold={1, 4})
    heard = [u for kind, u, _ in recorder.log if kind == "history"]
    assert {u: heard.count(u) for u in set(heard)} == {
        users[i].user_id: 4 for i in (0, 2, 3, 5)
    }
    swiped = {u for kind, u, _ in recorder.log if kind == "swipe"}
    assert swiped == {user.user_id for user in users}  # cold users still swipe


def _complete() -> Reaction:
    return Reaction([("impression", None), ("watch", 10_000)], 1.0)


def _skip() -> Reaction:
    return Reaction([("impression", None), ("skip", 800)], 0.04)


def test_item_to_item_recommends_what_was_completed_with_what_you_completed() -> None:
    catalog = SimCatalog(60, seed=0)
    a, b, c, d, e, f, g, fresh = make_users(8, catalog, seed=1)
    policy = ItemToItemPolicy(catalog)
    policy.add_items(np.arange(60), 0, new=False)
    # a completed 10 and 20, c 11 and 21; 51 is the most completed item; g only skipped
    for user, item in [(a, 10), (a, 20), (c, 11), (c, 21), (d, 51), (e, 51), (f, 51)]:
        policy.observe(user, item, _complete(), 0)
    policy.observe(g, 20, _skip(), 0)
    policy.observe(b, 10, _complete(), 0)
    assert policy.page(b, 0, 1) == [20]  # completed with 10, though 51 is more popular
    policy.observe(b, 11, _complete(), 0)
    # the newest engagement weighs most; then popularity fills the page
    assert policy.page(b, 0, 3) == [21, 20, 51]
    # no engagement yet (a skip is none): the most completed unseen items
    assert policy.page(fresh, 0, 3) == [51, 10, 11]
    assert policy.page(g, 0, 1) == [51]


def test_item_to_item_keeps_what_it_learned_when_new_items_arrive() -> None:
    catalog = SimCatalog(40, seed=0)
    a, b, c = make_users(3, catalog, seed=1)
    policy = ItemToItemPolicy(catalog)
    policy.add_items(np.arange(40), 0, new=False)
    for item in (1, 2):
        policy.observe(a, item, _complete(), 0)
    new = catalog.add_new(50, step=1)
    policy.add_items(new, 0, new=True)  # past the index's size: it grows
    for user, item in [(c, 1), (c, int(new[-1])), (b, 1)]:
        policy.observe(user, item, _complete(), 0)
    assert policy.page(b, 0, 2) == [2, int(new[-1])]
