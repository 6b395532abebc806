"""recserve.mlp: the float32 ranker, its int8 form, and the model file."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recserve
from recserve import mlp, simd

HEADS = ["complete", "replay", "like", "share", "comment", "follow", "skip", "watch_frac"]


def ranker(
    seed: int = 0, widths: tuple[int, ...] = (208, 256, 128, 64, 8), **kwargs: object
) -> mlp.Model:
    rng = np.random.default_rng(seed)
    weights = [
        rng.standard_normal((o, i)).astype(np.float32) * np.float32(np.sqrt(2 / i))
        for i, o in zip(widths[:-1], widths[1:], strict=True)
    ]
    biases = [0.1 * rng.standard_normal(o).astype(np.float32) for o in widths[1:]]
    heads = HEADS if widths[-1] == 8 else [f"h{i}" for i in range(widths[-1])]
    return mlp.Model.from_numpy(weights, biases, heads, **kwargs)  # type: ignore[arg-type]


def rows(n: int, dims: int = 208, seed: int = 1) -> npt.NDArray[np.float32]:
    return np.random.default_rng(seed).standard_normal((n, dims)).astype(np.float32)


@pytest.fixture(scope="module")
def model() -> mlp.Model:
    return ranker(
        activations={"watch_frac": "identity"}, metadata={"blend_weights": {"complete": 1}}
    )


@pytest.fixture(scope="module")
def quantized(model: mlp.Model) -> mlp.QuantizedModel:
    return model.quantize(rows(1000, seed=2))


def test_float_predict_matches_a_plain_forward_pass(model: mlp.Model) -> None:
    x = rows(5)
    a = x
    for i, (w, b) in enumerate(zip(model.weights, model.biases, strict=True)):
        a = a @ w.T + b
        a = np.maximum(a, 0) if i < 3 else a
    want = a.copy()
    want[:, :7] = 1 / (1 + np.exp(-a[:, :7]))
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-5, atol=1e-5)


def test_int8_tracks_float_on_held_out_rows(
    model: mlp.Model, quantized: mlp.QuantizedModel
) -> None:
    x = rows(500, seed=3)
    got, want = quantized.predict(x), model.predict(x)
    assert got.shape == (500, 8)
    assert got.dtype == np.float32
    assert np.abs(got[:, :7] - want[:, :7]).max() < 0.03  # untrained net: harder than a ranker
    assert np.abs(got[:, :7] - want[:, :7]).mean() < 0.005
    assert quantized.calibration is not None
    assert quantized.calibration.rows == 1000


def test_calibration_report_describes_the_chosen_form(quantized: mlp.QuantizedModel) -> None:
    report = quantized.calibration
    assert report is not None
    assert report.equalized == (report.alpha is not None)
    # the identity head's error is in logit units, hence the looser bound on the maximum
    assert 0 < report.mean_abs_error <= report.max_abs_error < 0.15
    assert report.mean_abs_error < 0.01


def test_quantize_keeps_the_candidate_closest_to_the_float_model() -> None:
    m = ranker(seed=4, widths=(16, 32, 2))
    x = rows(2000, dims=16, seed=5)
    x[:, 0] *= 30.0
    chosen = m.quantize(x).calibration
    plain = m.quantize(x, equalize=False).calibration
    smooth = m.quantize(x, equalize=True).calibration
    assert chosen is not None
    assert plain is not None
    assert smooth is not None
    assert not plain.equalized
    assert smooth.equalized
    assert smooth.alpha in (0.25, 0.5, 0.75)
    assert chosen.max_abs_error == min(plain.max_abs_error, smooth.max_abs_error)


def test_every_isa_scores_bit_identically(model: mlp.Model) -> None:
    x = rows(77, seed=6)
    calib = rows(300, seed=7)
    scores = [model.quantize(calib, isa=isa).predict(x) for isa in simd.available_isas()]
    for s in scores[1:]:
        np.testing.assert_array_equal(s, scores[0])


def test_predict_into_out_reuses_the_buffer(quantized: mlp.QuantizedModel) -> None:
    x = rows(10, seed=8)
    out = np.empty((10, 8), np.float32)
    assert quantized.predict(x, out=out) is out
    np.testing.assert_array_equal(out, quantized.predict(x))


def test_rows_are_scored_alike_alone_or_in_a_batch(quantized: mlp.QuantizedModel) -> None:
    x = rows(70, seed=9)
    batch = quantized.predict(x)
    for r in (0, 31, 32, 69):
        np.testing.assert_array_equal(quantized.predict(x[r : r + 1])[0], batch[r])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_a_value_error_naming_row_and_feature(
    quantized: mlp.QuantizedModel, model: mlp.Model, bad: float
) -> None:
    x = rows(4, seed=10)
    x[2, 17] = bad
    with pytest.raises(ValueError, match="row 2, feature 17"):
        quantized.predict(x)
    with pytest.raises(ValueError, match="row 2, feature 17"):
        model.predict(x)


def test_wrong_width_is_a_value_error(quantized: mlp.QuantizedModel) -> None:
    with pytest.raises(ValueError, match="208 features"):
        quantized.predict(rows(3, dims=207))
    with pytest.raises(ValueError, match="2 dimension"):
        quantized.predict(np.zeros(208, np.float32))


def test_out_of_the_wrong_shape_is_refused(quantized: mlp.QuantizedModel) -> None:
    with pytest.raises(ValueError, match="out must be"):
        quantized.predict(rows(3), out=np.empty((4, 8), np.float32))


def test_other_dtypes_and_layouts_are_converted(quantized: mlp.QuantizedModel) -> None:
    x = rows(6, seed=11)
    want = quantized.predict(x)
    np.testing.assert_array_equal(quantized.predict(x.astype(np.float64)), want)
    np.testing.assert_array_equal(quantized.predict(np.asfortranarray(x)), want)


def test_from_numpy_rejects_bad_shapes_and_names() -> None:
    w1, w2 = np.zeros((4, 3), np.float32), np.zeros((2, 4), np.float32)
    b1, b2 = np.zeros(4, np.float32), np.zeros(2, np.float32)
    with pytest.raises(ValueError, match=r"weights\[1\] takes 5 inputs"):
        mlp.Model.from_numpy([w1, np.zeros((2, 5), np.float32)], [b1, b2], ["a", "b"])
    with pytest.raises(ValueError, match=r"biases\[0\] must have shape \(4,\)"):
        mlp.Model.from_numpy([w1, w2], [np.zeros(3, np.float32), b2], ["a", "b"])
    with pytest.raises(ValueError, match="2 outputs but 3 heads"):
        mlp.Model.from_numpy([w1, w2], [b1, b2], ["a", "b", "c"])
    with pytest.raises(ValueError, match="unique"):
        mlp.Model.from_numpy([w1, w2], [b1, b2], ["a", "a"])
    with pytest.raises(ValueError, match="unknown head activation"):
        mlp.Model.from_numpy([w1, w2], [b1, b2], ["a", "b"], activations={"a": "tanh"})
    with pytest.raises(ValueError, match="heads that do not exist"):
        mlp.Model.from_numpy([w1, w2], [b1, b2], ["a", "b"], activations={"z": "identity"})
    nan = w1.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mlp.Model.from_numpy([nan, w2], [b1, b2], ["a", "b"])
    with pytest.raises(ValueError, match="JSON"):
        mlp.Model.from_numpy([w1, w2], [b1, b2], ["a", "b"], metadata={"x": float("nan")})


def test_quantize_rejects_bad_calibration(model: mlp.Model) -> None:
    with pytest.raises(ValueError, match="empty"):
        model.quantize(np.zeros((0, 208), np.float32))
    with pytest.raises(ValueError, match=r"shape \(n, 208\)"):
        model.quantize(rows(10, dims=20))
    bad = rows(10)
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="row 3, feature 3"):
        model.quantize(bad)


def test_int8_file_round_trips_scores_and_metadata(
    quantized: mlp.QuantizedModel, tmp_path: Path
) -> None:
    quantized.metadata["training"] = {"auc": {"complete": 0.71}}
    path = tmp_path / "ranker.rsm"
    quantized.save(path)
    back = mlp.Model.load(path)
    assert isinstance(back, mlp.QuantizedModel)
    assert back.heads == HEADS
    assert back.activations["watch_frac"] == "identity"
    assert back.metadata["training"] == {"auc": {"complete": 0.71}}
    assert back.metadata["blend_weights"] == {"complete": 1}
    x = rows(40, seed=12)
    np.testing.assert_array_equal(back.predict(x), quantized.predict(x))


def test_float_file_round_trips_exactly(model: mlp.Model, tmp_path: Path) -> None:
    model.save(tmp_path / "f.rsm")
    back = mlp.Model.load(tmp_path / "f.rsm")
    assert isinstance(back, mlp.Model)
    for a, b in zip(back.weights + back.biases, model.weights + model.biases, strict=True):
        np.testing.assert_array_equal(a, b)
    assert back.activations == model.activations
    assert back.metadata == model.metadata


def test_dequantized_model_computes_close_to_the_int8_one(quantized: mlp.QuantizedModel) -> None:
    x = rows(50, seed=13)
    diff = np.abs(quantized.dequantized().predict(x) - quantized.predict(x))
    assert diff[:, :7].max() < 0.03  # probabilities; watch_frac is an identity head here


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        mlp.Model.load(tmp_path / "absent.rsm")


def test_every_truncation_is_a_corrupt_file_error(tmp_path: Path) -> None:
    small = ranker(seed=14, widths=(6, 5, 2)).quantize(rows(20, dims=6))
    path = tmp_path / "m.rsm"
    small.save(path)
    data = path.read_bytes()
    for n in range(len(data)):
        path.write_bytes(data[:n])
        with pytest.raises(recserve.CorruptFileError):
            mlp.Model.load(path)


def test_metadata_that_is_not_json_is_reported_as_corrupt(tmp_path: Path) -> None:
    from recserve import _core

    m = ranker(seed=15, widths=(3, 2))
    path = tmp_path / "m.rsm"
    layers = [(w, b) for w, b in zip(m.weights, m.biases, strict=True)]
    _core.mlp.save_float(str(path), layers, m.heads, ["sigmoid"] * 2, "{not json")
    with pytest.raises(recserve.CorruptFileError, match="not JSON"):
        mlp.Model.load(path)
    _core.mlp.save_float(str(path), layers, m.heads, ["sigmoid"] * 2, json.dumps([1, 2]))
    with pytest.raises(recserve.CorruptFileError, match="not a JSON object"):
        mlp.Model.load(path)


@pytest.fixture(scope="module")
def saved_model_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "m.rsm"
    ranker(seed=16, widths=(7, 6, 3)).quantize(rows(30, dims=7)).save(path)
    return path.read_bytes()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzzed_files_load_or_raise_a_clear_error_never_crash(
    saved_model_bytes: bytes, tmp_path: Path, data: st.DataObject
) -> None:
    blob = bytearray(saved_model_bytes)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(blob)))
    path = tmp_path / "fuzz.rsm"
    path.write_bytes(bytes(blob[:cut]) + data.draw(st.binary(max_size=16)))
    try:
        mlp.Model.load(path)
    except recserve.CorruptFileError:
        pass  # the only acceptable failure


def test_many_threads_score_at_once_with_identical_results(quantized: mlp.QuantizedModel) -> None:
    x = rows(200, seed=17)
    want = quantized.predict(x)
    failures: list[str] = []

    def score() -> None:
        for _ in range(20):
            if not np.array_equal(quantized.predict(x), want):
                failures.append("mismatch")

    threads = [threading.Thread(target=score) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
