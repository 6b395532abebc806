"""Simulated sessions through the real engine (in process) and the baselines."""

from __future__ import annotations

from recserve.sim.catalog import SimCatalog
from recserve.sim.policies import EnginePolicy, OraclePolicy, PopularityPolicy, RandomPolicy
from recserve.sim.session import run_sessions
from recserve.sim.users import make_users


def test_every_policy_serves_every_swipe_and_the_oracle_bounds_them_all() -> None:
    catalog = SimCatalog(600, seed=5)
    users = make_users(8, catalog, seed=6)
    engine = EnginePolicy(catalog, frozen=False, feed={"precompute": False, "default_n": 1,
                                                       "explore_slots": 0, "trending": 0})
    policies = [engine, PopularityPolicy(catalog), RandomPolicy(catalog, seed=7),
                OraclePolicy(catalog)]
    try:
        result = run_sessions(catalog, users, policies, swipes=6, history=5, new_every=16,
                              new_items=10, seed=8)
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
    assert (result.calibration("oracle") == 3).all()


def test_a_frozen_engine_applies_the_history_but_no_session_event() -> None:
    catalog = SimCatalog(300, seed=1)
    users = make_users(2, catalog, seed=2)
    live, frozen = EnginePolicy(catalog, frozen=False), EnginePolicy(catalog, frozen=True)
    try:
        run_sessions(catalog, users, [live, frozen], swipes=4, history=3, new_items=0, seed=3)
        applied = {
            p.name: sum(p.engine.user(u.user_id)["events_applied"] for u in users)
            for p in (live, frozen)
        }
    finally:
        live.close()
        frozen.close()
    # Both heard the same history; only the live engine applied the session's events.
    assert applied["frozen"] == frozen.posted
    assert applied["recserve"] - applied["frozen"] == live.posted - frozen.posted
    assert live.posted - frozen.posted >= 2 * 4 * 2  # an impression and a watch or skip a swipe
