"""``recserve demo`` end to end at a small scale: both drivers, the files it writes, the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recserve.cli import main
from recserve.sim.demo import POLICIES, DemoConfig, run_demo
from recserve.sim.stages import parse_server_timing

SMALL = dict(users=24, swipes=8, history=4, items=800, new_every=48, new_items=4, seed=5,
             kuairand=None)


def test_the_demo_writes_its_summary_and_four_plots(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path / "out"), "--driver", "inprocess",
                 "--users", "20", "--swipes", "6"]) == 0
    out = tmp_path / "out"
    for name in ("summary.json", "engine.toml", "completion.png", "calibration.png",
                 "amplification.png", "latency.png"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["policies"]) == set(POLICIES)
    assert set(summary["latency"]["server_stages"]) == {"retrieve", "filter", "rank", "total"}
    share = summary["ratios"]["new_creator_impression_share"]
    assert share is None or 0.0 <= share <= 1.0
    printed = capsys.readouterr().out
    assert "recserve / frozen" in printed
    assert "latency during the run" in printed


def test_http_and_in_process_drivers_give_the_same_numbers_for_the_same_seed(
    tmp_path: Path,
) -> None:
    # The engines run on the session's simulated clock and build their ANN graph on one
    # thread, so nothing but the transport differs.
    http = run_demo(DemoConfig(driver="http", **SMALL), tmp_path / "http")
    local = run_demo(DemoConfig(driver="inprocess", **SMALL), tmp_path / "local")
    assert http["policies"] == local["policies"]
    assert http["amplification"] == local["amplification"]
    assert http["trajectories"] == local["trajectories"]
    chance = local["policies"]["random"]["completion_all"]
    for name in ("recserve", "frozen"):
        assert local["policies"][name]["completion_all"] > 2 * chance
    assert http["latency"]["client"]["recserve"]["feed"]["count"] == 24 * 8
    # every request's own stage timings, over HTTP from its Server-Timing header
    assert http["latency"]["server_stages"]["total"]["count"] == 24 * 8


def test_server_timing_is_read_per_stage_in_seconds() -> None:
    header = "retrieve;dur=0.412, filter;desc=\"drops\";dur=0.1, rank;dur=1.5, cache"
    assert parse_server_timing(header) == pytest.approx(
        {"retrieve": 0.000412, "filter": 0.0001, "rank": 0.0015}
    )
    assert parse_server_timing("") == {}
    with pytest.raises(ValueError, match="rank;dur=fast"):
        parse_server_timing("rank;dur=fast")
