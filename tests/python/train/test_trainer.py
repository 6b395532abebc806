"""recserve.train.trainer: metrics, training on a seeded synthetic log, export and int8."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from recserve import cli, mlp
from recserve.features import FeatureSpec
from recserve.train.labels import HEADS
from recserve.train.trainer import TrainResult, auc, log_loss, train

EPOCHS = 4


@pytest.fixture(scope="module")
def trained(synthetic_log: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    out = tmp_path_factory.mktemp("models") / "ranker.rsm"
    return train(synthetic_log, epochs=EPOCHS, seed=1, out=out, progress=False)


def test_auc_matches_a_hand_computed_example_with_ties() -> None:
    # positives score 0.9, 0.5, 0.3; negatives 0.5, 0.2, 0.1. Of the 9 (positive, negative)
    # pairs, 7 are ordered right, one is tied (0.5 vs 0.5, counts half), one is wrong.
    labels = [1, 0, 1, 0, 1, 0]
    scores = [0.9, 0.5, 0.5, 0.2, 0.3, 0.1]
    assert auc(labels, scores) == pytest.approx(7.5 / 9)
    assert auc([0, 1], [0.7, 0.7]) == pytest.approx(0.5)
    assert auc([0, 0, 1], [0.3, 0.2, 0.1]) == 0.0


def test_auc_of_a_single_class_is_none() -> None:
    assert auc([1, 1, 1], [0.1, 0.2, 0.3]) is None
    assert auc([], []) is None


def test_log_loss_matches_its_definition_with_soft_labels() -> None:
    y, p = np.array([1.0, 0.0, 0.25]), np.array([0.8, 0.3, 0.5])
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert log_loss(y, p) == pytest.approx(expected)


def test_training_beats_chance_on_every_head_and_int8_tracks_fp32(trained: TrainResult) -> None:
    metrics = trained.metrics
    # return: whether the user's next session starts within a day, mostly the user's own
    # habit; on this small log it is learnable but weakly (test_distill.py checks it).
    for head in [h for h in HEADS if h != "return"]:
        fp32_auc, int8_auc = metrics["fp32"][head]["auc"], metrics["int8"][head]["auc"]
        assert fp32_auc is not None, head
        assert int8_auc is not None, head
        assert fp32_auc > 0.6, head
        assert abs(int8_auc - fp32_auc) <= 0.01, head
    assert metrics["max_abs_diff"] < 0.05


def test_exported_model_matches_its_input_layout_and_heads(trained: TrainResult) -> None:
    assert trained.model.input_dim == 211 == trained.spec.width
    assert list(trained.model.heads) == list(HEADS)
    assert [w.shape for w in trained.model.weights] == [(256, 211), (128, 256), (64, 128), (9, 64)]
    probs = trained.model.predict(trained.x_heldout)
    assert probs.shape == (len(trained.x_heldout), len(HEADS))
    assert ((probs > 0) & (probs < 1)).all()


def test_saved_model_carries_feature_spec_blend_weights_and_metrics(
    trained: TrainResult, tmp_path: Path
) -> None:
    path = tmp_path / "again.rsm"
    trained.quantized.save(path)
    loaded = mlp.Model.load(path)
    assert isinstance(loaded, mlp.QuantizedModel)
    spec = FeatureSpec.from_dict(loaded.metadata["feature_spec"])
    assert spec.fitted
    assert spec.names == trained.spec.names
    assert set(loaded.metadata["blend_weights"]) == set(HEADS)
    training = loaded.metadata["training"]
    assert training["seed"] == 1
    assert training["epochs"] == EPOCHS
    # Every impression trains but those never viewed (no event joined them: an event without
    # a request id joins the latest of two impressions of one item).
    rows = training["rows"]["train"] + training["rows"]["heldout"]
    assert rows + training["not_viewed_impressions"] == 6000
    assert training["not_viewed_impressions"] < 10
    assert training["heldout_metrics"]["int8"]["complete"]["auc"] == pytest.approx(
        trained.metrics["int8"]["complete"]["auc"]
    )
    np.testing.assert_allclose(
        loaded.predict(trained.x_heldout), trained.quantized.predict(trained.x_heldout), atol=1e-6
    )


def test_held_out_rows_are_the_latest_fifth(trained: TrainResult) -> None:
    training = trained.metadata["training"]
    assert training["rows"]["heldout"] == 1200 == len(trained.y_heldout)
    assert training["log_range"][0] < training["heldout_from_ts"] <= training["log_range"][1]


def test_training_is_deterministic_given_the_seed(
    synthetic_log: Path, trained: TrainResult
) -> None:
    again = train(synthetic_log, epochs=EPOCHS, seed=1, progress=False)
    for a, b in zip(again.model.weights, trained.model.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        again.quantized.predict(again.x_heldout), trained.quantized.predict(trained.x_heldout)
    )


def test_missing_torch_names_the_train_extra(
    synthetic_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pip install 'recserve\[train\]'"):
        train(synthetic_log, epochs=1, progress=False)


def test_cli_writes_a_log_then_trains_and_prints_auc_per_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_dir, model = tmp_path / "log", tmp_path / "models" / "small.rsm"
    argv = [
        "log",
        "synthetic",
        "--out",
        str(log_dir),
        "--users",
        "30",
        "--items",
        "100",
        "--requests",
        "150",
        "--seed",
        "2",
    ]
    assert cli.main(argv) == 0
    assert "1,500 impressions" in capsys.readouterr().out
    argv = [
        "train",
        "--log",
        str(log_dir),
        "--out",
        str(model),
        "--epochs",
        "1",
        "--hidden",
        "32,16",
        "--negatives",
        "2",
        "--no-progress",
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "211 → 32 → 16 → 9" in out
    assert "(2 sampled negatives per impression)" in out
    for head in HEADS:
        assert f"\n{head} " in out
    assert "AUC fp32" in out
    assert "AUC int8" in out
    assert "logloss fp32" in out
    assert isinstance(mlp.Model.load(model), mlp.QuantizedModel)


def test_sampled_negatives_add_rows_per_impression_and_are_recorded(
    synthetic_log: Path, trained: TrainResult
) -> None:
    plain = trained  # the same log, without negatives
    sampled = train(synthetic_log, negatives=2, epochs=1, seed=1, progress=False)
    plain_rows = plain.metadata["training"]["rows"]
    sampled_rows = sampled.metadata["training"]["rows"]
    total = sampled_rows["train"] + sampled_rows["heldout"]
    assert total == 3 * (plain_rows["train"] + plain_rows["heldout"])
    assert plain.metadata["training"]["negatives"] == 0
    assert sampled.metadata["training"]["negatives"] == 2


def test_cli_refuses_negative_negatives_with_a_clear_error(
    synthetic_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "m.rsm"
    argv = ["train", "--log", str(synthetic_log), "--out", str(model), "--negatives", "-1"]
    assert cli.main(argv) == 2
    assert "negatives must be >= 0, got -1" in capsys.readouterr().err
    assert not model.exists()


def test_cli_builds_the_rows_as_the_configured_service_will(
    synthetic_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "service.toml"
    config.write_text(
        "[feed]\nrelated = 7\nregions = 4\n"
        "[co_engagement]\nneighbours = 128\npositive_weight = 0.25\n"
    )
    model = tmp_path / "m.rsm"
    argv = ["train", "--log", str(synthetic_log), "--out", str(model), "--epochs", "1"]
    assert cli.main([*argv, "--no-progress", "--config", str(config)]) == 0
    training = mlp.Model.load(model).metadata["training"]
    assert training["affinity_query"]["related"] == 7
    assert training["affinity_query"]["regions"] == 4
    assert training["co_engagement"]["neighbours"] == 128
    assert training["co_engagement"]["positive_weight"] == 0.25
    capsys.readouterr()
