"""``recserve demo --retrain-at``: the live engine retrains on its own log mid-run and serves the
new model for the rest, beside an engine that keeps the built-in model (small, in process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recserve import mlp
from recserve.sim.demo import RETRAIN_POLICIES, RETRAIN_VERSION, DemoConfig, run_demo
from recserve.sim.report import print_summary

pytest.importorskip("torch")

SMALL = dict(users=24, swipes=8, history=4, items=800, new_every=48, new_items=4, seed=5,
             kuairand=None, driver="inprocess")  # fmt: skip


def test_the_model_retrained_on_the_engines_own_log_serves_the_second_half(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = run_demo(DemoConfig(retrain_at=0.5, **SMALL), tmp_path / "out")
    assert list(summary["policies"]) == list(RETRAIN_POLICIES)
    r = summary["retrain"]
    assert r["after_swipe"] == 4
    # every page of the first half ranked by the built-in model, every page after by the new one
    assert r["served"]["recserve"] == {
        "first_half": {"builtin": 24 * 4},
        "second_half": {RETRAIN_VERSION: 24 * 4},
    }
    assert r["served"]["recserve-builtin"] == {
        "first_half": {"builtin": 24 * 4},
        "second_half": {"builtin": 24 * 4},
    }
    report = r["report"]
    assert (report["version"], report["active"], report["decision"]) == (
        RETRAIN_VERSION, "builtin", "activated",
    )  # fmt: skip
    assert report["candidate"]["auc"]["complete"] is not None
    assert set(report["incumbent"]) == {"auc", "hr@10"}
    assert r["log"]["impressions"] == 24 * 4  # the first half's pages, one item each
    # the same users, seeds and model: the two engines agree until the retraining
    first = r["first_half"]["completion"]
    assert first["recserve"] == first["recserve-builtin"]
    assert r["first_half"]["swipes"] == "1-4"
    assert r["second_half"]["swipes"] == "5-8"
    second = r["second_half"]["completion"]
    assert r["second_half"]["ratio"] == pytest.approx(
        second["recserve"] / second["recserve-builtin"]
    )
    model = mlp.Model.load(tmp_path / "out" / f"{RETRAIN_VERSION}.rsm")  # kept beside the summary
    assert model.metadata["retrain"]["decision"] == "activated"
    assert report["model_path"] == str(tmp_path / "out" / f"{RETRAIN_VERSION}.rsm")
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["retrain"]["second_half"] == r["second_half"]
    assert "impression_log = true" in (tmp_path / "out" / "engine-retrain.toml").read_text()
    assert "impression_log = false" in (tmp_path / "out" / "engine.toml").read_text()

    print_summary(summary)
    printed = capsys.readouterr().out
    assert "retrained after swipe 4 on recserve's own log" in printed
    assert "second half (5-8)" in printed
    served = f"recserve feeds ranked by  first half: builtin 96; second half: {RETRAIN_VERSION} 96"
    assert served in printed


def test_without_retrain_at_the_demo_runs_its_five_policies_and_no_retraining(
    tmp_path: Path,
) -> None:
    summary = run_demo(DemoConfig(**{**SMALL, "users": 12, "swipes": 4}), tmp_path / "out")
    assert list(summary["policies"]) == ["recserve", "frozen", "popularity", "random", "oracle"]
    assert "retrain" not in summary
    assert not (tmp_path / "out" / "engine-retrain.toml").exists()


@pytest.mark.parametrize("at", [0.0, 1.0, -0.5, 0.05])
def test_retrain_at_must_leave_swipes_on_both_sides(at: float) -> None:
    with pytest.raises(ValueError, match="retrain_at"):
        DemoConfig(swipes=8, retrain_at=at)
