"""recserve.amplify: tiers, budgets, thresholds, history, the open pool, persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recserve._core import CorruptFileError
from recserve.amplify import Amplifier, AmplifyConfig, Tier
from recserve.profiles import Events, Profiles, ProfilesConfig

CONFIG = AmplifyConfig(
    tiers=(
        Tier(budget=100, min_completion_rate=0.3, max_skip_rate=0.5),
        Tier(budget=1000, min_completion_rate=0.3, min_like_rate=0.05),
    )
)


def stats(
    impressions: int,
    completions: int = 0,
    likes: int = 0,
    shares: int = 0,
    fast_skips: int = 0,
    watches: int = 0,
) -> dict[str, list[int]]:
    return {
        "impressions": [impressions],
        "watches": [watches],
        "completions": [completions],
        "likes": [likes],
        "shares": [shares],
        "fast_skips": [fast_skips],
    }


def test_a_new_item_tests_at_tier_zero_until_its_budget_is_spent() -> None:
    a = Amplifier(CONFIG)
    assert a.enter(7, now_ms=1)
    assert not a.enter(7, now_ms=2)  # known: keeps its state
    assert a.observe([7], stats(99, completions=90), now_ms=3) == []
    assert a.state(7)["state"] == "testing"
    assert list(a.open_items()) == [7]


def test_a_strongly_engaging_item_is_promoted_then_graduates() -> None:
    a = Amplifier(CONFIG)
    a.enter(7, now_ms=0)
    [(item, t)] = a.observe([7], stats(100, completions=70, likes=10), now_ms=5)
    assert (item, t.state, t.tier) == (7, "promoted", 1)
    # Tier 1 judges its own audience: the counters since it began.
    assert a.observe([7], stats(1099, completions=700, likes=100), now_ms=6) == []
    [(_, t)] = a.observe([7], stats(1100, completions=770, likes=110), now_ms=7)
    assert t.state == "graduated"
    assert list(a.open_items()) == []
    history = a.state(7)["history"]
    assert [h["state"] for h in history] == ["testing", "promoted", "graduated"]


def test_a_poor_item_is_stopped_with_every_failed_threshold_in_its_reason() -> None:
    a = Amplifier(CONFIG)
    a.enter(8, now_ms=0)
    [(_, t)] = a.observe([8], stats(100, completions=5, fast_skips=80), now_ms=9)
    assert t.state == "stopped"
    assert "completion rate" in t.reason
    assert "skip rate" in t.reason
    assert t.rates["skip"] > 0.5
    assert a.observe([8], stats(5000, completions=5000), now_ms=10) == []  # stopped stays stopped
    assert a.counts() == {"testing": 0, "promoted": 0, "stopped": 1, "graduated": 0}


def test_rates_are_smoothed_toward_the_prior() -> None:
    a = Amplifier(AmplifyConfig(tiers=(Tier(budget=1, min_like_rate=0.5),)))
    a.enter(1, now_ms=0)
    [(_, t)] = a.observe([1], stats(1, likes=1), now_ms=1)  # 1 like of 1: not enough evidence
    assert t.state == "stopped"
    assert t.rates["like"] == pytest.approx((1 + 0.05 * 20) / (1 + 20))


def test_a_takedown_leaves_the_open_pool_at_once() -> None:
    a = Amplifier(CONFIG)
    a.enter(1, now_ms=0)
    a.enter(2, now_ms=0)
    assert a.remove(1)
    assert list(a.open_items()) == [2]
    assert a.state(1) is None


def test_state_survives_a_json_round_trip() -> None:
    a = Amplifier(CONFIG)
    a.enter(7, now_ms=0)
    a.observe([7], stats(100, completions=70, likes=10), now_ms=5)
    b = Amplifier.from_dict(json.loads(json.dumps(a.to_dict())), CONFIG)
    assert b.state(7) == a.state(7)
    assert (
        b.observe([7], stats(1100, completions=770, likes=110), now_ms=7)[0][1].state == "graduated"
    )


def test_configuration_is_checked() -> None:
    config = AmplifyConfig.from_dict(
        {"tiers": [{"budget": 50, "max_skip_rate": 0.4}], "priors": {"like": [0.1, 10]}}
    )
    assert config.tiers == (Tier(budget=50, max_skip_rate=0.4),)
    assert config.priors["like"] == (0.1, 10.0)
    with pytest.raises(ValueError, match="unknown setting"):
        AmplifyConfig.from_dict({"tiers": [{"budget": 5, "min_views": 1}]})
    with pytest.raises(ValueError, match="budget must be >= 1"):
        Tier(budget=0)
    with pytest.raises(ValueError, match="at least one tier"):
        AmplifyConfig(tiers=())


def test_judged_from_the_counters_events_leave_in_profiles() -> None:
    profiles = Profiles(ProfilesConfig(dims=4, user_capacity=4096, item_capacity=64))
    profiles.set_items([1, 2], np.eye(4, dtype=np.float32)[:2])
    n = 100
    users = np.arange(n)
    for item, watch_ms, kind in ((1, 29_000, "watch"), (2, 500, "skip")):
        profiles.apply(
            Events.of(
                users=np.repeat(users, 2),
                items=[item] * 2 * n,
                types=["impression", kind] * n,
                watch_ms=np.tile([0, watch_ms], n),
                duration_ms=[30_000] * 2 * n,
                ts_ms=[0] * 2 * n,
                seq=np.arange(1, 2 * n + 1) + (item - 1) * 2 * n,
            )
        )
    a = Amplifier(CONFIG)
    a.enter(1, now_ms=0)
    a.enter(2, now_ms=0)
    made = dict(a.observe([1, 2], profiles.items([1, 2]).stats, now_ms=1))
    assert made[1].state == "promoted"
    assert made[2].state == "stopped"


def test_an_established_item_is_graduated_at_once_and_never_open() -> None:
    amplifier = Amplifier(AmplifyConfig())
    assert amplifier.enter(1, 10, established=True)
    assert not amplifier.is_open(1)
    assert amplifier.state(1)["state"] == "graduated"
    assert amplifier.counts()["graduated"] == 1
    restored = Amplifier.from_dict(amplifier.to_dict())
    assert restored.state(1)["state"] == "graduated"


def _judged() -> Amplifier:
    a = Amplifier(CONFIG)
    for item in range(10):
        a.enter(item, now_ms=item // 4, counters={"impressions": item % 3})  # shared histories
    a.enter(20, now_ms=3, established=True)
    a.observe([1], stats(100, completions=70, likes=10), now_ms=5)
    a.observe([2], stats(100, completions=5, fast_skips=80), now_ms=9)
    a.observe([3], stats(100, completions=70, likes=10), now_ms=6)
    a.observe([3], stats(1100, completions=770, likes=110), now_ms=7)
    a.remove(4)
    return a


def test_state_survives_a_columns_round_trip(tmp_path: Path) -> None:
    a = _judged()
    a.image().write(tmp_path / "amplifier.bin")
    b = Amplifier.from_columns(Amplifier.read(tmp_path / "amplifier.bin"), CONFIG)
    assert b.to_dict() == a.to_dict()
    assert sorted(b.open_items().tolist()) == sorted(a.open_items().tolist())
    assert b.counts() == a.counts()
    later = stats(1100, completions=770, likes=110)
    assert b.observe([1], later, now_ms=8) == a.observe([1], later, now_ms=8)
    assert b.to_dict() == a.to_dict()


def test_an_image_is_the_state_when_it_was_taken(tmp_path: Path) -> None:
    a = _judged()
    image, before = a.image(), a.to_dict()
    a.observe([1], stats(1100, completions=770, likes=110), now_ms=8)  # after the image
    a.enter(30, now_ms=9)
    image.write(tmp_path / "amplifier.bin")
    assert (
        Amplifier.from_columns(Amplifier.read(tmp_path / "amplifier.bin"), CONFIG).to_dict()
        == before
    )


def test_columns_refuse_a_tier_the_configuration_no_longer_has(tmp_path: Path) -> None:
    _judged().image().write(tmp_path / "amplifier.bin")
    one_tier = AmplifyConfig(tiers=(Tier(budget=100),))
    with pytest.raises(ValueError, match="tier 1 of 1"):
        Amplifier.from_columns(Amplifier.read(tmp_path / "amplifier.bin"), one_tier)


def test_a_damaged_amplification_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "amplifier.bin"
    _judged().image().write(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError):
        Amplifier.read(path)
