"""recserve.mlp_onnx: importing and exporting the MLP subset of ONNX, checked against
onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recserve import mlp

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def run_ort(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def model(seed: int = 0, activations: dict[str, str] | None = None) -> mlp.Model:
    rng = np.random.default_rng(seed)
    w = [
        rng.standard_normal((o, i)).astype(np.float32) * 0.3 for i, o in [(12, 16), (16, 8), (8, 3)]
    ]
    b = [rng.standard_normal(o).astype(np.float32) * 0.1 for o in (16, 8, 3)]
    return mlp.Model.from_numpy(w, b, ["like", "skip", "watch_frac"], activations=activations)


@pytest.mark.parametrize(
    "activations",
    [
        None,
        {"watch_frac": "identity"},
        {"like": "identity", "skip": "identity", "watch_frac": "identity"},
    ],
)
def test_exported_graph_runs_in_onnxruntime_and_imports_back(
    tmp_path: Path, activations: dict[str, str] | None
) -> None:
    m = model(activations=activations)
    path = tmp_path / "m.onnx"
    m.to_onnx(path)
    x = np.random.default_rng(1).standard_normal((9, 12)).astype(np.float32)
    np.testing.assert_allclose(run_ort(path, x), m.predict(x), rtol=1e-5, atol=1e-6)
    back = mlp.Model.from_onnx(path)
    assert back.heads == m.heads
    assert back.activations == m.activations
    np.testing.assert_allclose(back.predict(x), m.predict(x), rtol=1e-6, atol=1e-7)


def graph_from(nodes: list, inits: list, width: int, out: int, path: Path) -> Path:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", out])],
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, str(path))
    return path


def test_matmul_add_graphs_as_pytorch_exports_them_import(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    w1, b1 = (
        rng.standard_normal((5, 4)).astype(np.float32),
        rng.standard_normal(4).astype(np.float32),
    )
    w2 = rng.standard_normal((4, 2)).astype(np.float32)  # MatMul takes [in, out]
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["m1"]),
        helper.make_node("Add", ["m1", "b1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["h1"]),
        helper.make_node("Gemm", ["h1", "W2"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(w1, "W1"),
        numpy_helper.from_array(b1, "b1"),
        numpy_helper.from_array(w2, "W2"),
    ]
    path = graph_from(nodes, inits, 5, 2, tmp_path / "mm.onnx")
    m = mlp.Model.from_onnx(path, heads=["a", "b"])
    x = rng.standard_normal((6, 5)).astype(np.float32)
    np.testing.assert_allclose(m.predict(x), run_ort(path, x), rtol=1e-5, atol=1e-6)
    assert m.activations == {"a": "sigmoid", "b": "sigmoid"}


def test_unsupported_ops_are_refused_with_the_node_named(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.ones((3, 2), np.float32), "W")
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["m"]),
        helper.make_node("Tanh", ["m"], ["y"], name="act"),
    ]
    path = graph_from(nodes, [w], 3, 2, tmp_path / "tanh.onnx")
    with pytest.raises(ValueError, match="'act' \\(Tanh\\)"):
        mlp.Model.from_onnx(path)


def test_weights_fed_as_graph_inputs_are_refused(tmp_path: Path) -> None:
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3]),
            helper.make_tensor_value_info("W", TensorProto.FLOAT, [3, 2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(proto, str(tmp_path / "in.onnx"))
    with pytest.raises(ValueError, match="one input"):
        mlp.Model.from_onnx(tmp_path / "in.onnx")
