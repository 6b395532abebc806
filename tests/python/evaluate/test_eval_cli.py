"""recserve.evaluate.cli: the ``recserve eval`` subcommand (through its own parser)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from test_eval_replay import catalogue, event_dict, log, write_items

from recserve.evaluate import cli
from recserve.evaluate.replay import write_jsonl


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="recserve eval")
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    cat = catalogue()
    write_items(tmp_path / "items.jsonl", cat)
    write_jsonl(tmp_path / "events.jsonl", [event_dict(e) for e in log(cat)])
    return tmp_path / "events.jsonl", tmp_path / "items.jsonl"


def test_json_output_is_one_object_with_every_policy(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    events, items = files
    assert run(["--log", str(events), "--items", str(items), "--split", "0.5", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    result = json.loads(out, parse_constant=pytest.fail)  # strict JSON: no NaN/Infinity
    for policy in ("realtime", "frozen", "popularity", "popularity_frozen", "itemcf", "als"):
        assert set(result[policy]) == {"hr@10", "ndcg@10", "hits"}
        assert 0.0 <= result[policy]["hr@10"] <= 1.0
        assert 0.0 <= result[policy]["ndcg@10"] <= result[policy]["hr@10"]
    assert result["evaluated"] > 0
    peers = result["settings"]["peers"]
    assert set(peers["itemcf"]) == {"decay", "window", "normalize", "validation"}
    assert set(peers["als"]) == {"factors", "regularization", "alpha", "iterations", "validation"}
    assert peers["validation"]["to_ts"] == result["split_ts"]


def test_table_and_configuration(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, items = files
    config = tmp_path / "recserve.toml"
    config.write_text("[feed]\nsession_weight = 0.8\n\n[update_rule]\nlr_session = 0.5\n")
    argv = ["--log", str(events), "--items", str(items), "--config", str(config), "--whole-run"]
    assert run(argv) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "realtime / frozen" in out
    assert "whole run" in out
    assert "realtime / itemcf" in out
    assert "peers tuned on" in out
    assert "  itemcf  decay=" in out
    assert "  als     factors=" in out
    assert "tuning the peers" in captured.err
    assert run([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["settings"]["feed"]["session_weight"] == 0.8
    assert result["settings"]["update_rule"]["lr_session"] == 0.5
    assert result["settings"]["feed"]["explore_slots"] == 0


def test_fixed_peer_settings_skip_the_tuning(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, items = files
    peers = {
        "itemcf": {"decay": 0.6, "window": 5, "normalize": "none"},
        "als": {"factors": 4, "regularization": 1.0, "alpha": 40.0, "iterations": 3},
    }
    (tmp_path / "peers.json").write_text(json.dumps(peers))
    argv = ["--log", str(events), "--items", str(items), "--split", "0.5"]
    for value in (json.dumps(peers), str(tmp_path / "peers.json")):
        assert run([*argv, "--peers", value]) == 0
        captured = capsys.readouterr()
        assert "tuning the peers" not in captured.err
        assert "  itemcf  decay=0.6, window=5, normalize=none" in captured.out
    assert run([*argv, "--peers", json.dumps(peers), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["settings"]["peers"] == peers
    assert run([*argv, "--peers", "{not json"]) == 2
    assert "--peers: not JSON" in capsys.readouterr().err
    assert run([*argv, "--peers", '{"itemcf": {"decay": 2.0}}']) == 2
    assert "peers: decay must be in (0, 1]" in capsys.readouterr().err
    assert run([*argv, "--peers", '{"als": {"rank": 3}}']) == 2
    assert "peers: " in capsys.readouterr().err


def test_bad_input_exits_2_with_a_message(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, items = files
    assert run(["--log", str(events)]) == 2
    assert "--log needs --items" in capsys.readouterr().err
    assert run(["--log", str(tmp_path / "nope.jsonl"), "--items", str(items)]) == 2
    assert "no such file" in capsys.readouterr().err
    events.write_text(events.read_text() + "{broken\n")
    assert run(["--log", str(events), "--items", str(items)]) == 2
    err = capsys.readouterr().err
    assert "events.jsonl:" in err
    assert err.startswith("error: ")
    assert run(["--movielens", str(tmp_path / "nothing-here")]) == 2
    assert "MovieLens input missing" in capsys.readouterr().err


def test_movielens_without_a_config_uses_the_packaged_settings() -> None:
    from recserve.service.settings import load_settings

    settings = load_settings(cli.MOVIELENS_CONFIG)
    assert settings.feed.popularity_weight == pytest.approx(0.05)
    assert settings.feed.related_weight == pytest.approx(3.0)
    assert settings.feed.quality_weight == 0.0
    changed = {"popularity_weight", "related_weight", "quality_weight"}
    assert settings.feed.model_fields_set == changed  # nothing else
    assert settings.co_engagement.positive_weight == pytest.approx(0.25)
    assert settings.co_engagement.neighbours == 256
