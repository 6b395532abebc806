"""recserve.train.trainer: distillation through a larger teacher, the return head, and models
written before the return head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recserve import cli, mlp
from recserve.rank import BUILTIN_VERSION, ModelRegistry
from recserve.train.labels import HEADS
from recserve.train.log import read_log
from recserve.train.replay import Dataset, replay
from recserve.train.trainer import TrainResult, train_dataset

EPOCHS = 3
STUDENT = (16, 8)
TEACHER = (96, 48)


@pytest.fixture(scope="module")
def dataset(synthetic_log: Path) -> Dataset:
    return replay(read_log(synthetic_log))


@pytest.fixture(scope="module")
def distilled(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    out = tmp_path_factory.mktemp("distilled") / "student.rsm"
    return train_dataset(
        dataset,
        epochs=EPOCHS,
        seed=3,
        hidden=STUDENT,
        learning_rate=1e-2,
        distill=True,
        teacher_hidden=TEACHER,
        distill_weight=0.5,
        out=out,
        progress=False,
    )


def test_distillation_writes_the_int8_student_with_the_teachers_record(
    distilled: TrainResult,
) -> None:
    assert [w.shape[0] for w in distilled.model.weights] == [*STUDENT, len(HEADS)]
    assert distilled.teacher is not None
    assert [w.shape[0] for w in distilled.teacher.weights] == [*TEACHER, len(HEADS)]
    record = distilled.metadata["training"]["distillation"]
    assert record["teacher_layers"] == [211, *TEACHER, len(HEADS)]
    assert record["distill_weight"] == 0.5
    assert record["soft_loss"]["watch_frac"] == "mse"
    assert record["soft_loss"]["complete"] == "bce"
    assert set(record["teacher_heldout_auc"]) == set(HEADS)
    assert record["teacher_heldout_auc"]["complete"] == pytest.approx(
        distilled.metrics["teacher"]["complete"]["auc"]
    )
    assert record["without_teacher_heldout_auc"]["skip"] == pytest.approx(
        distilled.metrics["without_teacher"]["int8"]["skip"]["auc"]
    )
    for head in ("complete", "skip"):
        for auc in (
            distilled.metrics["teacher"][head]["auc"],
            distilled.metrics["without_teacher"]["int8"][head]["auc"],
            distilled.metrics["int8"][head]["auc"],
        ):
            assert auc is not None
            assert auc > 0.65, head


def test_the_written_student_loads_with_its_metadata(
    distilled: TrainResult, tmp_path: Path
) -> None:
    path = tmp_path / "student.rsm"
    distilled.quantized.save(path)
    loaded = mlp.Model.load(path)
    assert isinstance(loaded, mlp.QuantizedModel)
    assert loaded.heads == list(HEADS)
    assert loaded.metadata["training"]["distillation"]["teacher_layers"][1:-1] == list(TEACHER)
    np.testing.assert_array_equal(
        loaded.predict(distilled.x_heldout), distilled.quantized.predict(distilled.x_heldout)
    )


def test_soft_labels_pull_the_student_toward_the_teacher(dataset: Dataset) -> None:
    # Trained enough to fit (learning rate 0.01): the student on the teacher's probabilities
    # alone ends closer to them than the same student, same seed, on the true labels.
    result = train_dataset(
        dataset,
        epochs=3,
        seed=3,
        hidden=(32, 16),
        learning_rate=1e-2,
        distill=True,
        teacher_hidden=TEACHER,
        distill_weight=1.0,
        progress=False,
    )
    assert result.teacher is not None
    assert result.without_teacher is not None
    x = result.x_heldout
    target = result.teacher.predict(x)
    with_teacher = np.abs(result.model.predict(x) - target).mean()
    alone = np.abs(result.without_teacher.predict(x) - target).mean()
    assert with_teacher < 0.9 * alone


def test_distill_weight_out_of_range_is_refused(dataset: Dataset) -> None:
    with pytest.raises(ValueError, match=r"distill_weight must be in \[0, 1\]"):
        train_dataset(dataset, epochs=1, distill=True, distill_weight=1.5, progress=False)


def test_the_return_head_is_trained_on_known_labels_and_blended_at_weight_0(
    distilled: TrainResult, dataset: Dataset
) -> None:
    k = HEADS.index("return")
    assert dataset.label_mask is not None  # the log's last day is censored
    assert not dataset.label_mask[:, k].all()
    assert dataset.label_mask[:, [h for h in range(len(HEADS)) if h != k]].all()
    held = distilled.metrics["int8"]["return"]
    assert distilled.mask_heldout is not None
    assert held["rows"] == int(distilled.mask_heldout[:, k].sum()) > 0
    assert held["auc"] is not None
    assert distilled.metadata["blend_weights"]["return"] == 0.0


def test_models_written_before_the_return_head_still_load_and_rank(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path, dims=64)
    ranker = registry.get(BUILTIN_VERSION)
    assert "return" not in ranker.heads
    assert len(ranker.heads) == 8
    rows = np.random.default_rng(0).standard_normal((5, ranker.spec.width)).astype(np.float32)
    probs, scores = ranker.score(rows)
    assert probs.shape == (5, 8)
    assert np.isfinite(scores).all()
    with pytest.raises(ValueError, match=r"lacks"):
        ranker.with_blend({"return": 0.1})


def test_cli_distills_and_prints_the_three_aucs(
    synthetic_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "s.rsm"
    argv = ["train", "--log", str(synthetic_log), "--out", str(model), "--epochs", "1"]
    argv += ["--hidden", "16,8", "--distill", "--teacher-hidden", "64,32"]
    argv += ["--distill-weight", "0.7", "--return-window", "43200", "--no-progress"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "teacher 211 → 64 → 32 → 9 (fp32)" in out
    assert "teacher  student +teacher" in out
    assert "\nreturn " in out
    training = mlp.Model.load(model).metadata["training"]
    assert training["distillation"]["distill_weight"] == 0.7
    assert training["return_window_s"] == 43200
