"""``recserve demo`` end to end at a small scale: both drivers, the files it writes, the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recserve.cli import main
from recserve.sim.demo import POLICIES, DemoConfig, run_demo
from recserve.sim.stages import stage_latency

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


def test_stage_latency_reads_the_histogram_of_a_scrape() -> None:
    text = "\n".join([
        'recserve_feed_stage_seconds_bucket{le="0.001",stage="rank"} 2.0',
        'recserve_feed_stage_seconds_bucket{le="0.002",stage="rank"} 4.0',
        'recserve_feed_stage_seconds_bucket{le="+Inf",stage="rank"} 4.0',
        'recserve_feed_stage_seconds_count{stage="rank"} 4.0',
        'recserve_feed_stage_seconds_sum{stage="rank"} 0.005',
    ])
    rank = stage_latency(text)["rank"]
    assert rank["count"] == 4
    assert rank["mean_ms"] == pytest.approx(1.25)
    assert rank["p50_ms"] == pytest.approx(1.0)
    assert rank["p99_ms"] == pytest.approx(1.98)
