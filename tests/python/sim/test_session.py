"""Simulated sessions through the real engine (in process) and the baselines."""

from __future__ import annotations

from pathlib import Path

from recserve.sim.backends import InProcessBackend
from recserve.sim.catalog import SimCatalog
from recserve.sim.policies import EnginePolicy, OraclePolicy, PopularityPolicy, RandomPolicy
from recserve.sim.session import run_sessions
from recserve.sim.users import make_users

CONFIG = """
dims = 32
impression_log = false
[feed]
precompute = false
"""


def _engine(tmp_path: Path, name: str, catalog: SimCatalog, *, frozen: bool) -> EnginePolicy:
    config = tmp_path / "engine.toml"
    config.write_text(CONFIG)
    return EnginePolicy(name, catalog, InProcessBackend(config, tmp_path / name), frozen=frozen)


def test_every_policy_serves_every_swipe_and_the_oracle_bounds_them_all(tmp_path: Path) -> None:
    catalog = SimCatalog(600, seed=5)
    users = make_users(8, catalog, seed=6)
    engine = _engine(tmp_path, "recserve", catalog, frozen=False)
    policies = [
        engine,
        PopularityPolicy(catalog),
        RandomPolicy(catalog, seed=7),
        OraclePolicy(catalog),
    ]
    try:
        result = run_sessions(
            catalog, users, policies, swipes=6, history=5, new_every=16, new_items=10, seed=8
        )
        states = engine.tier_states(result.new_items)
    finally:
        engine.close()
    for policy in policies:
        assert result.completion[policy.name].shape == (8, 6)
        assert ((result.completion[policy.name] >= 0) & (result.completion[policy.name] <= 1)).all()
        assert result.window("oracle", 1, 6) >= result.window(policy.name, 1, 6)
    assert result.window("recserve", 1, 6) > result.window("random", 1, 6)
    assert len(result.new_items) == 30  # 48 swipes: three arrivals of 10
    assert len(catalog) == 630
    assert result.impressions["recserve"].shape == (30,)
    # One item a swipe (pages of 1): the new items' share is of all 48 impressions.
    assert result.served_total["recserve"] == 48
    assert result.new_item_share("recserve") == result.impressions["recserve"].sum() / 48
    assert result.new_item_share("random") is None  # counts no impressions
    assert (result.calibration("oracle") == 3).all()
    # New items test for an audience; the back catalogue loaded at the start does not.
    assert all(s.split(":")[0] in {"testing", "promoted", "stopped"} for s in states)


def test_a_frozen_engine_applies_the_history_but_no_session_event(tmp_path: Path) -> None:
    catalog = SimCatalog(300, seed=1)
    users = make_users(2, catalog, seed=2)
    live = _engine(tmp_path, "recserve", catalog, frozen=False)
    frozen = _engine(tmp_path, "frozen", catalog, frozen=True)
    try:
        run_sessions(catalog, users, [live, frozen], swipes=4, history=3, new_items=0, seed=3)
        applied = {
            p.name: sum(p.backend.engine.user(u.user_id)["events_applied"] for u in users)
            for p in (live, frozen)
        }
        old = live.backend.item(catalog.id_of(0))["amplification"]["state"]
    finally:
        live.close()
        frozen.close()
    # Both heard the same history; only the live engine applied the session's events.
    assert applied["frozen"] == frozen.posted
    assert applied["recserve"] - applied["frozen"] == live.posted - frozen.posted
    assert live.posted - frozen.posted >= 2 * 4 * 2  # an impression and a watch or skip a swipe
    assert old == "graduated"  # the catalogue at the start is an established back catalogue


def test_a_client_without_impression_events_still_exposes_what_its_users_met(
    tmp_path: Path,
) -> None:
    catalog = SimCatalog(300, seed=1)
    users = make_users(3, catalog, seed=2)
    config = tmp_path / "engine.toml"
    config.write_text(CONFIG)
    engine = EnginePolicy(
        "recserve",
        catalog,
        InProcessBackend(config, tmp_path / "quiet"),
        frozen=False,
        impression_events=False,
    )
    try:
        run_sessions(catalog, users, [engine], swipes=4, history=3, new_items=0, seed=3)
        met = sum(engine.backend.engine.user(u.user_id)["impressions"] for u in users)
    finally:
        engine.close()
    # One watch or skip a swipe, no impression events: each still one impression.
    assert engine.posted >= 3 * (3 + 4)
    assert met == 3 * (3 + 4)
