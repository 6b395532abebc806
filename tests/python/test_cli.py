"""recserve's command line: every failure, of every subcommand, is one line on stderr
(``error: ...``) and exit status 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recserve import cli, simd
from recserve.train.log import Event, Impression, LogWriter, write_catalog


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().err


def log_dir(path: Path, *, catalog: bool = True, records: bool = True) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if catalog:
        write_catalog(path, [1, 2], np.eye(2, 4, dtype=np.float32) + 0.1, [0.0, 0.0])
    if records:
        with LogWriter(path) as writer:
            writer.append(Impression(1.0, "r1", "u1", 1, 0))
            writer.append(Event(2.0, "e1", "u1", 1, "like", "r1"))
    return path


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    log_dir(tmp_path / "log")
    log_dir(tmp_path / "empty-log", records=False)  # a catalogue, no impressions
    (tmp_path / "empty-log" / "impressions-000001.jsonl").write_text(
        '{"format": "recserve.impressions", "version": 2, "segment": 1, "created_at": 0}\n'
    )
    log_dir(tmp_path / "old-data" / "impressions", catalog=False)  # from before catalog.npz
    (tmp_path / "no-log-data" / "state").mkdir(parents=True)
    log_dir(tmp_path / "corrupt-catalog")
    (tmp_path / "corrupt-catalog" / "catalog.npz").write_bytes(b"PK\x03\x04 cut short")
    log_dir(tmp_path / "bad-record")
    with (tmp_path / "bad-record" / "impressions-000001.jsonl").open("a") as f:
        f.write('{"kind": "impression", "ts": "soon"}\n')
    (tmp_path / "bad.toml").write_text("dims = [\n")
    (tmp_path / "unknown.toml").write_text("no_such_setting = 1\n")
    (tmp_path / "a-file").write_text("")
    return tmp_path


OUT = ["--out", "m.rsm"]
BAD = [
    pytest.param([], id="no-command"),
    pytest.param(["bogus"], id="unknown-command"),
    pytest.param(["info", "--bogus"], id="unknown-option"),
    pytest.param(["train", *OUT], id="train-without-log-or-data-dir"),
    pytest.param(["train", "--log", "{t}/log", "--data-dir", "{t}", *OUT], id="train-both"),
    pytest.param(["train", "--log", "{t}/log", "--hidden", "a,b", *OUT], id="train-bad-hidden"),
    pytest.param(["train", "--log", "{t}/log", "--epochs", "x", *OUT], id="train-bad-epochs"),
    pytest.param(["train", "--log", "{t}/missing", *OUT], id="train-missing-log"),
    pytest.param(["train", "--log", "{t}/empty-log", *OUT], id="train-empty-log"),
    pytest.param(["train", "--log", "{t}/corrupt-catalog", *OUT], id="train-corrupt-catalog"),
    pytest.param(["train", "--log", "{t}/bad-record", *OUT], id="train-bad-record"),
    pytest.param(["train", "--log", "{t}/old-data/impressions", *OUT], id="train-no-catalog"),
    pytest.param(["train", "--data-dir", "{t}/missing", *OUT], id="data-dir-missing"),
    pytest.param(["train", "--data-dir", "{t}/no-log-data", *OUT], id="data-dir-no-log"),
    pytest.param(["train", "--data-dir", "{t}/a-file", *OUT], id="data-dir-a-file"),
    pytest.param(["train", "--log", "{t}/log", "--config", "{t}/bad.toml", *OUT], id="bad-toml"),
    pytest.param(["train", "--log", "{t}/log", "--config", "{t}/nope.toml", *OUT], id="no-toml"),
    pytest.param(["train", "--log", "{t}/log", "--epochs", "0", *OUT], id="train-0-epochs"),
    pytest.param(["log", "synthetic", "--out", "{t}/a-file/log"], id="log-out-under-a-file"),
    pytest.param(["log", "movielens", "--out", "{t}/ml", "--data-dir", "{t}/missing"], id="ml"),
    pytest.param(["eval", "--log", "{t}/missing.jsonl", "--items", "{t}/x"], id="eval-missing"),
    pytest.param(["eval", "--movielens", "{t}/missing"], id="eval-movielens-missing"),
    pytest.param(["serve", "--config", "{t}/bad.toml"], id="serve-bad-toml"),
    pytest.param(["serve", "--config", "{t}/unknown.toml"], id="serve-unknown-setting"),
    pytest.param(["serve", "--dims", "-3"], id="serve-bad-dims"),
    pytest.param(["demo", "--grid", "--driver", "http"], id="demo-grid-http"),
]


@pytest.mark.parametrize("argv", BAD)
def test_a_failure_is_one_line_and_exit_2(
    argv: list[str], inputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run([a.replace("{t}", str(inputs)) for a in argv], capsys)
    assert code == 2
    assert err.count("\n") == 1, err
    assert err.startswith("error: ")
    assert "Traceback" not in err


def test_a_data_dir_from_before_the_catalogue_says_how_to_get_it(
    inputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run(["train", "--data-dir", str(inputs / "old-data"), *OUT], capsys)
    assert code == 2
    assert "catalog.npz is missing" in err
    assert f"recserve serve --data-dir {inputs / 'old-data'}" in err


def test_a_missing_extra_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "recserve.train.synthetic", None)  # import fails
    code, err = run(["log", "synthetic", "--out", str(tmp_path / "log")], capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert "recserve.train.synthetic" in err


def test_an_unexpected_error_names_its_type(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> str:
        raise RuntimeError("no kernels\ntoday")

    monkeypatch.setattr(simd, "active_isa", broken)
    code, err = run(["info"], capsys)
    assert code == 2
    assert err == "error: RuntimeError: no kernels; today\n"


def test_ctrl_c_is_no_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted() -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(simd, "active_isa", interrupted)
    assert run(["info"], capsys) == (130, "interrupted\n")


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert cli.main(["train", "--help"]) == 0
    assert "--data-dir" in capsys.readouterr().out


def test_the_installed_command_prints_one_line_too(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    done = subprocess.run(
        [sys.executable, "-m", "recserve", "train", "--data-dir", str(missing), *OUT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == f"error: --data-dir {missing}: no such directory\n"
