"""recserve.amplify: tiers, budgets, thresholds, history, the open pool, persistence."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from recserve._columns import string_columns
from recserve._core import CorruptFileError
from recserve.amplify import COUNTERS, Amplifier, AmplifyConfig, Tier
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
    assert a.counts() == {
        "testing": 0,
        "promoted": 0,
        "stopped": 1,
        "graduated": 0,
        "pending_review": 0,
        "rejected": 0,
    }


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


# ---- sequential judging on the excess over the audience's match ------------------------------
SEQUENTIAL = AmplifyConfig(
    tiers=(Tier(budget=50, min_excess=0.0), Tier(budget=500, min_excess=0.05)),
    confidence=0.9,
    min_judged=4,
    excess_prior=4.0,
)
# The catalogue's curve: an impression of match m completes 0.2 + 0.5 m and skips 0.5 - 0.5 m.
CURVE = {
    "impressions": [100, 100],
    "impression_match_sum": [0.0, 100.0],
    "completions": [20, 70],
    "fast_skips": [50, 0],
}


def judged(config: AmplifyConfig = SEQUENTIAL) -> Amplifier:
    a = Amplifier(config)
    a.refit(CURVE, now_ms=0)
    return a


def seen(impressions: int, match: float, completions: int, fast_skips: int) -> dict[str, list]:
    return {
        **stats(impressions, completions=completions, fast_skips=fast_skips),
        "impression_match_sum": [match * impressions],
    }


def test_the_outcome_curve_is_fitted_on_impressions_and_their_match() -> None:
    a = judged()
    assert a.curve.complete == pytest.approx((0.2, 0.5))
    assert a.curve.skip == pytest.approx((0.5, -0.5))
    assert not a.needs_refit(1)
    assert a.needs_refit(300_000)


def test_a_thin_sample_keeps_the_priors_and_is_refitted_at_the_next_batch() -> None:
    a = Amplifier(SEQUENTIAL)
    a.refit({k: [v[0] / 20] for k, v in CURVE.items()}, now_ms=5)  # one item, 5 impressions
    assert a.curve.complete == (SEQUENTIAL.priors["completion"][0], 0.0)
    assert a.needs_refit(5)  # 5 impressions: not enough to fit; try again
    a.refit(CURVE, now_ms=6)
    assert a.curve.complete == pytest.approx((0.2, 0.5))
    assert not a.needs_refit(7)


def test_a_tier_stops_early_once_its_audience_clearly_does_worse_than_predicted() -> None:
    a = judged()
    a.enter(1, now_ms=0)
    assert a.observe([1], seen(3, 0.5, 0, 3), now_ms=1) == []  # fewer than min_judged
    made = []
    for n in range(4, 51):
        made = a.observe([1], seen(n, 0.5, 0, n), now_ms=n)  # every impression a fast skip
        if made:
            break
    [(_, t)] = made
    assert t.state == "stopped"
    assert n < 10
    assert "excess" in t.reason
    assert "< bar" in t.reason
    assert t.rates["excess"] < 0
    assert t.rates["impressions"] == n
    assert not a.is_open(1)


def test_a_tier_promotes_early_once_its_audience_clearly_does_better() -> None:
    a = judged()
    a.enter(1, now_ms=0)
    made = []
    for n in range(4, 51):
        made = a.observe([1], seen(n, 0.0, n, 0), now_ms=n)  # far beyond 0.2 completions
        if made:
            break
    [(_, t)] = made
    assert (t.state, t.tier) == ("promoted", 1)
    assert n < 10
    assert a.state(1)["tier"] == 1
    assert a.is_open(1)


def test_the_excess_pools_every_impression_since_the_item_entered_testing() -> None:
    a = judged()
    a.enter(1, now_ms=0)
    [(_, t)] = a.observe([1], seen(12, 0.0, 12, 0), now_ms=1)  # clearly good at tier 0
    assert t.state == "promoted"
    # Three poor impressions of tier 1's own audience: the twelve before still count.
    assert a.observe([1], seen(15, 0.0, 12, 3), now_ms=2) == []
    assert a.state(1)["state"] == "promoted"


def test_an_audience_matched_to_the_item_earns_it_no_credit() -> None:
    # Both complete 70 % and never skip: what the well-matched audience was predicted to do,
    # far more than a random audience.
    a = judged()
    a.enter(1, now_ms=0)
    a.enter(2, now_ms=0)
    made = dict(a.observe([1, 2], {
        "impressions": [40, 40], "completions": [28, 28], "fast_skips": [0, 0],
        "impression_match_sum": [40.0, 0.0],
    }, now_ms=1))  # fmt: skip
    assert made[2].state == "promoted"
    assert 1 not in made  # as predicted: no excess, the budget not spent, no verdict yet
    [(_, t)] = a.observe([1], {
        "impressions": [50], "completions": [35], "fast_skips": [0], "impression_match_sum": [50.0],
    }, now_ms=2)  # fmt: skip
    assert t.rates["excess"] == pytest.approx(0.0, abs=1e-9)


def test_with_the_budget_spent_the_tier_decides_on_the_posterior_mean() -> None:
    a = judged(AmplifyConfig(tiers=(Tier(budget=6, min_excess=0.0),), confidence=0.99))
    a.enter(1, now_ms=0)
    a.enter(2, now_ms=0)
    made = dict(a.observe([1, 2], {
        "impressions": [6, 6], "completions": [3, 0], "fast_skips": [1, 3],
        "impression_match_sum": [0.0, 0.0],
    }, now_ms=1))  # fmt: skip
    assert made[1].state == "graduated"
    assert made[2].state == "stopped"
    assert "budget spent" in made[2].reason


# ---- review -----------------------------------------------------------------------------------
REVIEWED = dataclasses.replace(SEQUENTIAL, review_before_tier=1)


def pending(a: Amplifier, item: int) -> None:
    a.enter(item, now_ms=0)
    [(_, t)] = a.observe([item], seen(50, 0.0, 50, 0), now_ms=10)
    assert (t.state, t.tier) == ("pending_review", 0)


def test_an_item_that_passes_the_tier_before_review_waits_outside_the_open_pool() -> None:
    a = judged(REVIEWED)
    pending(a, 1)
    assert not a.is_open(1)
    assert a.pending_review() == [(1, 10)]
    assert a.observe([1], seen(500, 0.0, 500, 0), now_ms=11) == []  # no more judging
    t = a.review(
        1,
        "approve",
        "looks fine",
        now_ms=20,
        counters={k: v[0] for k, v in seen(60, 0.0, 55, 0).items()},
    )
    assert (t.state, t.tier, t.reason) == ("promoted", 1, "approved by review: looks fine")
    assert a.is_open(1)
    assert a.pending_review() == []
    # Tier 1 counts its audience from the approval on.
    assert a.observe([1], seen(63, 0.0, 58, 0), now_ms=21) == []


def test_a_rejected_item_keeps_its_history_and_a_second_decision_is_refused() -> None:
    a = judged(REVIEWED)
    pending(a, 1)
    t = a.review(1, "reject", "spam", now_ms=20)
    assert t.state == "rejected"
    assert [h["state"] for h in a.state(1)["history"]] == ["testing", "pending_review", "rejected"]
    with pytest.raises(ValueError, match="not pending review"):
        a.review(1, "approve", "", now_ms=21)
    with pytest.raises(ValueError, match="not pending review"):
        a.review(99, "approve", "", now_ms=21)
    pending(a, 2)
    with pytest.raises(ValueError, match="decision must be"):
        a.review(2, "maybe", "", now_ms=21)
    assert a.state(2)["state"] == "pending_review"  # nothing changed


def test_a_budget_below_min_judged_is_still_decided_when_spent() -> None:
    a = judged(AmplifyConfig(tiers=(Tier(budget=2, min_excess=0.0),), min_judged=4))
    a.enter(1, now_ms=0)
    [(_, t)] = a.observe([1], seen(2, 0.0, 2, 0), now_ms=1)
    assert t.state == "graduated"


def test_review_before_graduating_and_the_setting_bounds() -> None:
    a = judged(dataclasses.replace(SEQUENTIAL, tiers=SEQUENTIAL.tiers[:1], review_before_tier=1))
    pending(a, 1)
    assert a.review(1, "approve", "", now_ms=20).state == "graduated"
    with pytest.raises(ValueError, match="review_before_tier must be in"):
        AmplifyConfig.from_dict({"review_before_tier": 4})
    with pytest.raises(ValueError, match="confidence must be"):
        AmplifyConfig.from_dict({"confidence": 1.0})
    with pytest.raises(ValueError, match="min_judged must be a number"):
        AmplifyConfig.from_dict({"min_judged": "many"})
    assert AmplifyConfig.from_dict({"confidence": "0.8", "review_before_tier": "2"}).z > 0
    with pytest.raises(ValueError, match="min_excess must be"):
        Tier(budget=5, min_excess=2.0)


def test_judging_state_survives_both_snapshot_forms(tmp_path: Path) -> None:
    a = judged(REVIEWED)
    pending(a, 1)
    pending(a, 2)
    a.review(2, "reject", "spam", now_ms=20)
    a.enter(3, now_ms=0, counters={"impressions": 2, "impression_match_sum": 1.5})
    a.image().write(tmp_path / "amplifier.bin")
    b = Amplifier.from_columns(Amplifier.read(tmp_path / "amplifier.bin"), REVIEWED)
    c = Amplifier.from_dict(json.loads(json.dumps(a.to_dict())), REVIEWED)
    for restored in (b, c):
        assert restored.to_dict() == a.to_dict()
        assert restored.curve == a.curve
        assert restored.refit_at_ms == a.refit_at_ms
        assert restored.pending_review() == [(1, 10)]
        assert restored.curve_sample().tolist() == a.curve_sample().tolist() == [1, 2, 3]


def test_an_older_file_without_the_match_counter_or_curve_loads(tmp_path: Path) -> None:
    a = _judged()
    columns = a.image().columns()
    width = len(COUNTERS)
    columns["starts"] = columns["starts"].reshape(-1, width)[:, : width - 1].reshape(-1)
    columns.update(string_columns("counters", COUNTERS[:-1]))
    del columns["judge.curve"], columns["judge.refit_at_ms"], columns["entered"]
    b = Amplifier.from_columns(columns, CONFIG)
    # What an older file cannot tell: counters at entry, taken as the tier's start.
    expected = {k: {**v, "entered": v["start"]} for k, v in a.to_dict()["items"].items()}
    assert b.to_dict()["items"] == expected
    assert b.needs_refit(0)
