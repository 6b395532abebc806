"""The multi-task ranker: a float32 model as trained, and its int8 form as served.

A model is a stack of dense layers, ReLU between them, whose last layer's outputs are the
heads (``complete``, ``replay``, ``like`` … ``watch_frac``), each with its own output
activation: ``sigmoid`` (the default, for probabilities) or ``identity``.

>>> m = Model.from_numpy(weights=[W1, W2, W3], biases=[b1, b2, b3], heads=[...])
>>> q = m.quantize(calibration_rows)       # the int8 model: what the feed serves
>>> q.predict(x)                           # float32 [n, inputs] -> float32 [n, heads]
>>> q.save("models/ranker.rsm"); Model.load("models/ranker.rsm")

Weights use PyTorch's ``nn.Linear`` layout, ``[out, in]``. The int8 model quantizes weights
per output channel (8 bits, symmetric) and activations per row (7 bits, refreshed after every
layer), sums in int32 and runs the same kernels on every ISA, so its scores are bit-identical on
every machine; the first layer reads 16-bit inputs, where 7 bits would cost the most accuracy.
``quantize`` uses the calibration rows to decide whether and how strongly to equalise the input
features (scale each one toward a common range and fold that into the first layer, as
SmoothQuant does), keeping whichever form tracks the float model best on them.

Model files (``.rsm``) carry the feature spec, head names, blend weights and the training record
in ``metadata``, and a checksum: a damaged file raises :class:`recserve.CorruptFileError`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from recserve import _core
from recserve._core import CorruptFileError

__all__ = ["Activation", "CalibrationReport", "Model", "QuantizedModel", "CorruptFileError"]

Activation = Literal["sigmoid", "identity"]
FloatArray = npt.NDArray[np.float32]
_ACTIVATIONS = ("sigmoid", "identity")


@dataclass(frozen=True)
class CalibrationReport:
    """How the int8 model tracks the float one on the calibration rows."""

    rows: int
    equalized: bool
    alpha: float | None  # the SmoothQuant migration strength chosen, None when not equalized
    max_abs_error: float  # over every head and row (identity heads: in their own units)
    mean_abs_error: float


def _as_rows(x: Any, width: int, what: str) -> FloatArray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{what} must be numeric, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"{what} must have shape (n, {width}), got {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{what} row {row}, feature {col} is {arr[row, col]} (NaN or infinite)")
    return arr


def _metadata_text(metadata: Mapping[str, Any] | None) -> str:
    try:
        return json.dumps(dict(metadata or {}), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"metadata must be JSON-serialisable (no NaN): {e}") from None


def _parse_metadata(text: str, path: str | Path) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError as e:
        raise CorruptFileError(f"model file '{path}' has metadata that is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise CorruptFileError(f"model file '{path}' has metadata that is not a JSON object")
    return value


class Model:
    """A float32 ranker: the trained model, and the reference its int8 form is held to."""

    def __init__(
        self,
        weights: Sequence[FloatArray],
        biases: Sequence[FloatArray],
        heads: Sequence[str],
        activations: Sequence[str],
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if len(weights) == 0 or len(weights) != len(biases):
            raise ValueError(
                f"need one bias per weight matrix and at least one layer, got "
                f"{len(weights)} weights and {len(biases)} biases"
            )
        ws: list[FloatArray] = []
        bs: list[FloatArray] = []
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            w_arr = np.ascontiguousarray(w, dtype=np.float32)
            b_arr = np.ascontiguousarray(b, dtype=np.float32)
            if w_arr.ndim != 2:
                raise ValueError(f"weights[{i}] must be 2-D [out, in], got shape {w_arr.shape}")
            if b_arr.shape != (w_arr.shape[0],):
                raise ValueError(
                    f"biases[{i}] must have shape ({w_arr.shape[0]},), got {b_arr.shape}"
                )
            if i > 0 and w_arr.shape[1] != ws[-1].shape[0]:
                raise ValueError(
                    f"weights[{i}] takes {w_arr.shape[1]} inputs but weights[{i - 1}] "
                    f"gives {ws[-1].shape[0]} (weights are [out, in])"
                )
            if not (np.isfinite(w_arr).all() and np.isfinite(b_arr).all()):
                raise ValueError(f"layer {i} has a NaN or infinite weight or bias")
            ws.append(w_arr)
            bs.append(b_arr)
        heads = list(heads)
        if len(heads) != ws[-1].shape[0]:
            raise ValueError(
                f"the last layer has {ws[-1].shape[0]} outputs but {len(heads)} heads are named"
            )
        if len(set(heads)) != len(heads) or not all(heads):
            raise ValueError(f"head names must be unique and non-empty, got {heads}")
        activations = list(activations)
        for a in activations:
            if a not in _ACTIVATIONS:
                raise ValueError(f"unknown head activation {a!r}: use 'sigmoid' or 'identity'")
        self._weights = ws
        self._biases = bs
        self._heads = heads
        self._activations = activations
        self.metadata: dict[str, Any] = dict(metadata or {})
        _metadata_text(self.metadata)

    @classmethod
    def from_numpy(
        cls,
        weights: Sequence[npt.ArrayLike],
        biases: Sequence[npt.ArrayLike],
        heads: Sequence[str],
        activations: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Model:
        """A model from ``[out, in]`` weight matrices and biases; every head not named in
        ``activations`` is a sigmoid."""
        activations = dict(activations or {})
        unknown = set(activations) - set(heads)
        if unknown:
            raise ValueError(f"activations names heads that do not exist: {sorted(unknown)}")
        return cls(
            [np.asarray(w) for w in weights],
            [np.asarray(b) for b in biases],
            heads,
            [activations.get(h, "sigmoid") for h in heads],
            metadata,
        )

    @property
    def weights(self) -> list[FloatArray]:
        return [w.copy() for w in self._weights]

    @property
    def biases(self) -> list[FloatArray]:
        return [b.copy() for b in self._biases]

    @property
    def heads(self) -> list[str]:
        return list(self._heads)

    @property
    def activations(self) -> dict[str, str]:
        return dict(zip(self._heads, self._activations, strict=True))

    @property
    def input_dim(self) -> int:
        return int(self._weights[0].shape[1])

    def logits(self, x: npt.ArrayLike) -> FloatArray:
        """The last layer's outputs before the head activations."""
        a = _as_rows(x, self.input_dim, "x")
        for i, (w, b) in enumerate(zip(self._weights, self._biases, strict=True)):
            a = a @ w.T + b
            if i + 1 < len(self._weights):
                np.maximum(a, 0.0, out=a)
        return a

    def predict(self, x: npt.ArrayLike) -> FloatArray:
        """float32 [n, inputs] -> float32 [n, heads]."""
        y = self.logits(x)
        sig = np.array([a == "sigmoid" for a in self._activations])
        with np.errstate(over="ignore"):  # exp(-y) = inf for y << 0 gives the right 0
            y[:, sig] = 1.0 / (1.0 + np.exp(-y[:, sig]))
        return y

    def _layers(self) -> list[tuple[FloatArray, FloatArray]]:
        return list(zip(self._weights, self._biases, strict=True))

    def quantize(
        self, calibration_inputs: npt.ArrayLike, *, equalize: bool | None = None, isa: str = ""
    ) -> QuantizedModel:
        """The int8 model. ``calibration_inputs`` (float32 [n, inputs], a few thousand training
        rows) measure each candidate form against this model and the closest one is kept:
        no equalisation, or SmoothQuant with strength 0.25, 0.5 or 0.75 (``equalize`` False or
        True restricts the choice)."""
        calib = _as_rows(calibration_inputs, self.input_dim, "calibration_inputs")
        if calib.shape[0] == 0:
            raise ValueError("calibration_inputs is empty: give a sample of training rows")
        reference = self.predict(calib)
        alphas: list[float | None] = []
        if equalize is not True:
            alphas.append(None)
        if equalize is not False:
            alphas += [0.25, 0.5, 0.75]
        best: tuple[float, float, float | None, _core.mlp.QuantizedMlp] | None = None
        for alpha in alphas:
            scale = None if alpha is None else self._equalizing_scale(calib, alpha)
            q = _core.mlp.quantize(
                self._layers(),
                self._heads,
                self._activations,
                scale,
                _metadata_text(self.metadata),
                isa,
            )
            err = np.abs(q.predict(calib) - reference)
            candidate = (float(err.max()), float(err.mean()), alpha, q)
            if best is None or candidate[:2] < best[:2]:
                best = candidate
        assert best is not None
        report = CalibrationReport(
            rows=int(calib.shape[0]),
            equalized=best[2] is not None,
            alpha=best[2],
            max_abs_error=best[0],
            mean_abs_error=best[1],
        )
        return QuantizedModel(best[3], dict(self.metadata), report)

    def _equalizing_scale(self, calib: FloatArray, alpha: float) -> FloatArray:
        # SmoothQuant: feature j is multiplied by w_j^alpha / x_j^alpha, where x_j is its largest
        # calibration magnitude and w_j the largest first-layer weight reading it (the weights
        # are divided by the same factor), moving quantization difficulty between the two.
        x_max = np.abs(calib).max(axis=0).astype(np.float64)
        w_max = np.abs(self._weights[0]).max(axis=0).astype(np.float64)
        usable = (x_max > 0) & (w_max > 0)
        scale = np.ones(self.input_dim)
        scale[usable] = (w_max[usable] / x_max[usable]) ** alpha
        scale /= math.exp(float(np.log(scale).mean()))  # centred on 1: per-row quantization
        return scale.astype(np.float32)  # does not care about a common factor

    def save(self, path: str | Path) -> None:
        """Writes a float32 model file (checksummed, replaced atomically)."""
        _core.mlp.save_float(
            str(path), self._layers(), self._heads, self._activations, _metadata_text(self.metadata)
        )

    @staticmethod
    def load(path: str | Path) -> Model | QuantizedModel:
        """Reads a model file: a :class:`Model` or a :class:`QuantizedModel`, by what it holds."""
        parts = _core.mlp.load(str(path))
        metadata = _parse_metadata(parts["metadata"], path)
        if parts["weight_type"] == "float32":
            layers = parts["layers"]
            return Model(
                [w for w, _ in layers],
                [b for _, b in layers],
                parts["heads"],
                parts["activations"],
                metadata,
            )
        q = _core.mlp.QuantizedMlp(
            parts["layers"],
            parts["heads"],
            parts["activations"],
            parts["input_scale"],
            parts["metadata"],
            "",
        )
        return QuantizedModel(q, metadata, None)

    @staticmethod
    def from_onnx(path: str | Path, heads: Sequence[str] | None = None) -> Model:
        """Imports the MLP subset of ONNX (Gemm, or MatMul + Add; Relu; Sigmoid): see
        :mod:`recserve.mlp_onnx`."""
        from recserve.mlp_onnx import read_onnx_mlp

        weights, biases, activations, stored_heads = read_onnx_mlp(path)
        names = list(heads) if heads is not None else stored_heads
        if names is None:
            names = [f"out{i}" for i in range(weights[-1].shape[0])]
        return Model(weights, biases, names, activations)

    def to_onnx(self, path: str | Path) -> None:
        """Writes this model as an ONNX graph (Gemm, Relu, Sigmoid) that onnxruntime runs."""
        from recserve.mlp_onnx import write_onnx_mlp

        write_onnx_mlp(path, self._weights, self._biases, self._activations, self._heads)


class QuantizedModel:
    """The int8 ranker, packed for this machine's kernels. ``predict`` releases the GIL and
    allocates nothing but its result (pass ``out=`` to reuse one)."""

    def __init__(
        self,
        core: _core.mlp.QuantizedMlp,
        metadata: dict[str, Any],
        calibration: CalibrationReport | None,
    ) -> None:
        self._core = core
        self.metadata = metadata
        self.calibration = calibration

    @property
    def core(self) -> _core.mlp.QuantizedMlp:
        """The packed model in the core, for the native feed."""
        return self._core

    @property
    def heads(self) -> list[str]:
        return self._core.heads

    @property
    def activations(self) -> dict[str, str]:
        return dict(zip(self._core.heads, self._core.activations, strict=True))

    @property
    def input_dim(self) -> int:
        return self._core.input_dim

    @property
    def kernel_variant(self) -> str:
        """The kernels that score, e.g. 'avx2' or 'neon+dotprod'."""
        return self._core.kernel_variant

    def predict(self, x: npt.ArrayLike, out: FloatArray | None = None) -> FloatArray:
        """float32 [n, inputs] -> float32 [n, heads]. NaN or infinite input is a ValueError
        naming the row and feature."""
        arr = np.asarray(x)
        if arr.dtype != np.float32 or not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr, dtype=np.float32)
        return self._core.predict(arr, out)

    def dequantized(self) -> Model:
        """The float32 model this int8 one computes (weights times scales), for inspection."""
        layers = self._core.layers
        weights = [q.astype(np.float32) * s[:, None] for q, s, _ in layers]
        scale = self._core.input_scale
        if scale is not None:
            weights[0] = weights[0] * scale[None, :]
        return Model(
            weights,
            [b for _, _, b in layers],
            self.heads,
            [self.activations[h] for h in self.heads],
            self.metadata,
        )

    def save(self, path: str | Path) -> None:
        """Writes an int8 model file (checksummed, replaced atomically) with this metadata."""
        if self.metadata != _parse_metadata(self._core.metadata, path):
            q = self._core
            self._core = _core.mlp.QuantizedMlp(
                q.layers, q.heads, q.activations, q.input_scale, _metadata_text(self.metadata), ""
            )
        self._core.save(str(path))
