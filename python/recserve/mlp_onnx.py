"""ONNX in and out for the ranker: the MLP subset only.

Read: a single-input graph that is a chain of dense layers, each ``Gemm`` (alpha = beta = 1,
no transA, either transB) or ``MatMul`` followed by ``Add`` of a constant bias, with ``Relu``
between them, then optionally ``Sigmoid`` on every output, or the mixed form that
:func:`write_onnx_mlp` writes (``Where(mask, Sigmoid(z), z)``). Weights must be initializers.
Anything else is refused with the node that broke the pattern named.

Write: ``Gemm`` (transB = 1, PyTorch's layout), ``Relu``, then the head activations; head
names go in the model's ``metadata_props`` as ``recserve.heads``. Needs ``pip install onnx``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["read_onnx_mlp", "write_onnx_mlp"]

FloatArray = npt.NDArray[np.float32]
_HEADS_KEY = "recserve.heads"


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError(
            "ONNX import/export needs the onnx package: pip install 'recserve[onnx]'"
        ) from None
    return onnx


def read_onnx_mlp(
    path: str | Path,
) -> tuple[list[FloatArray], list[FloatArray], list[str], list[str] | None]:
    """(weights [out, in], biases, per-output activations, head names or None)."""
    onnx = _onnx()
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    consts = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in graph.initializer}
    bools = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:  # Constant nodes hold weights in some exporters
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t).astype(np.float32)
            bools[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    inputs = [i.name for i in graph.input if i.name not in consts]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ValueError(
            f"{path}: an MLP has one input and one output, got inputs {inputs} and "
            f"{len(graph.output)} outputs"
        )
    nodes = [n for n in graph.node if n.op_type != "Constant"]

    def fail(node: Any, why: str) -> ValueError:
        return ValueError(f"{path}: node {node.name or node.op_type!r} ({node.op_type}): {why}")

    def const(node: Any, name: str) -> FloatArray:
        if name not in consts:
            raise fail(node, f"{name!r} must be an initializer")
        return np.asarray(consts[name], dtype=np.float32)

    weights: list[FloatArray] = []
    biases: list[FloatArray] = []
    current = inputs[0]
    pre_activation = ""
    i = 0
    final: list[str] | None = None
    while i < len(nodes):
        node = nodes[i]
        if current not in node.input:
            raise fail(node, f"does not read {current!r}: only a chain of layers is supported")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Gemm":
            if (
                attrs.get("alpha", 1.0) != 1.0
                or attrs.get("beta", 1.0) != 1.0
                or attrs.get("transA", 0)
            ):
                raise fail(node, "only alpha = beta = 1 and transA = 0 are supported")
            w = const(node, node.input[1])
            weights.append(w if attrs.get("transB", 0) else w.T)
            out = weights[-1].shape[0]
            biases.append(
                np.broadcast_to(const(node, node.input[2]), (out,)).copy()
                if len(node.input) > 2 and node.input[2]
                else np.zeros(out, np.float32)
            )
        elif node.op_type == "MatMul":
            weights.append(const(node, node.input[1]).T)
            out = weights[-1].shape[0]
            nxt = nodes[i + 1] if i + 1 < len(nodes) else None
            if nxt is not None and nxt.op_type == "Add" and node.output[0] in nxt.input:
                other = [n for n in nxt.input if n != node.output[0]][0]
                biases.append(np.broadcast_to(const(nxt, other), (out,)).copy())
                i += 1
                node = nxt
            else:
                biases.append(np.zeros(out, np.float32))
        elif node.op_type == "Relu" and weights and i + 1 < len(nodes):
            pass
        elif node.op_type == "Identity":
            pass
        elif node.op_type == "Sigmoid" and weights:
            pre_activation = current
            final = ["sigmoid"] * weights[-1].shape[0]
        elif node.op_type == "Where" and final is not None and pre_activation in node.input:
            mask = bools.get(node.input[0])
            if mask is None or list(node.input[1:]) != [current, pre_activation]:
                raise fail(node, "only Where(constant mask, Sigmoid(z), z) is supported")
            final = ["sigmoid" if m else "identity" for m in np.asarray(mask).reshape(-1)]
        else:
            raise fail(
                node, "not part of the supported MLP subset (Gemm, MatMul+Add, Relu, Sigmoid)"
            )
        current = node.output[0]
        i += 1
    if not weights:
        raise ValueError(f"{path}: no dense layer found")
    if current != graph.output[0].name:
        raise ValueError(f"{path}: the chain ends at {current!r}, not at the graph output")
    activations = final if final is not None else ["identity"] * weights[-1].shape[0]
    if len(activations) != weights[-1].shape[0]:
        raise ValueError(
            f"{path}: the activation mask has {len(activations)} entries for "
            f"{weights[-1].shape[0]} outputs"
        )
    heads = None
    for prop in model.metadata_props:
        if prop.key == _HEADS_KEY:
            heads = prop.value.split(",")
    return (
        [np.ascontiguousarray(w, np.float32) for w in weights],
        [np.ascontiguousarray(b, np.float32) for b in biases],
        activations,
        heads,
    )


def write_onnx_mlp(
    path: str | Path,
    weights: Sequence[FloatArray],
    biases: Sequence[FloatArray],
    activations: Sequence[str],
    heads: Sequence[str],
) -> None:
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    nodes = []
    inits = []
    current = "x"
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        inits += [
            numpy_helper.from_array(np.asarray(w, np.float32), f"W{i}"),
            numpy_helper.from_array(np.asarray(b, np.float32), f"b{i}"),
        ]
        out = f"z{i}"
        nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"b{i}"], [out], transB=1))
        current = out
        if i + 1 < len(weights):
            nodes.append(helper.make_node("Relu", [current], [f"h{i}"]))
            current = f"h{i}"
    sig = [a == "sigmoid" for a in activations]
    if all(sig):
        nodes.append(helper.make_node("Sigmoid", [current], ["y"]))
    elif any(sig):
        nodes.append(helper.make_node("Sigmoid", [current], ["p"]))
        inits.append(numpy_helper.from_array(np.array([sig]), "mask"))
        nodes.append(helper.make_node("Where", ["mask", "p", current], ["y"]))
    else:
        nodes.append(helper.make_node("Identity", [current], ["y"]))
    graph = helper.make_graph(
        nodes,
        "recserve_ranker",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", int(weights[0].shape[1])])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", int(weights[-1].shape[0])])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {_HEADS_KEY: ",".join(heads)})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
