"""ONNX handlers of RNN, GRU and LSTM (opset 14+), imported as nn.rnn / nn.gru / nn.lstm (mpc/ir/ops_rnn.py).

Every attribute is consumed or rejected by name: `layout` and `direction` (forward, reverse,
bidirectional) are kept; `activations` only when they are the defaults (RNN Tanh; GRU Sigmoid, Tanh;
LSTM Sigmoid, Tanh, Tanh, repeated per direction); `clip`, `activation_alpha`/`activation_beta`,
LSTM `input_forget` = 1 and the `sequence_lens` input are rejected. A missing bias (and LSTM peephole)
becomes a zero weight; an initial cell state without an initial hidden state is rejected.
"""
from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from mpc.errors import Location
from mpc.frontend.onnx_ops import Known, Node, handler
from mpc.ir import InferError, Op, Value, lookup
from mpc.ir.ops_rnn import GATES, Direction, RNNAttrs

_COMMON = ("activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size", "layout")
_DEFAULT_ACTS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}
_KINDS = {"RNN": "nn.rnn", "GRU": "nn.gru", "LSTM": "nn.lstm"}


def _attrs(node: Node) -> RNNAttrs:
    """The op's attributes; UnsupportedOp naming any attribute value that is not implemented."""
    for key in ("clip", "activation_alpha", "activation_beta"):
        if key in node.attrs:
            raise node.reject("is not supported", key)
    if int(node.attr("input_forget", 0)):
        raise node.reject("input_forget=1 is not supported", "input_forget")
    direction = node.attr("direction", "forward")
    if direction not in {d.value for d in Direction}:
        raise node.reject("expected forward, reverse or bidirectional", "direction")
    d = 2 if direction == "bidirectional" else 1
    acts = node.attr("activations")
    if acts is not None and [a.lower() for a in acts] != [a.lower() for a in _DEFAULT_ACTS[node.op_type] * d]:
        raise node.reject(f"only the default activations {_DEFAULT_ACTS[node.op_type]} are supported",
                          "activations")
    layout = int(node.attr("layout", 0))
    if layout not in (0, 1):
        raise node.reject("expected 0 or 1", "layout")
    if node.attr("hidden_size") is None:
        raise node.reject("hidden_size is required", "hidden_size")
    return RNNAttrs(int(node.attr("hidden_size")), Direction(direction), layout,
                    bool(node.attr("linear_before_reset", 0)))


def _zeros(cx, node: Node, shape: tuple, suffix: str) -> Value:
    dtype = cx.type(node, 1).dtype.numpy
    return cx.weight(Known(np.zeros(shape, dtype), f"{node.name}.{suffix}"), node.op_type, node.name)


def _operands(cx, node: Node, a: RNNAttrs) -> list[Value]:
    """x, w, r, b (zeros when absent), [p], then the given initial states."""
    if node.has_input(4):
        raise node.reject(f"input sequence_lens ('{node.inputs[4]}') is not supported (sequences are full length)")
    d, g, h = (2 if a.direction is Direction.BIDIRECTIONAL else 1), GATES[_KINDS[node.op_type]], a.hidden_size
    ops = [cx.value(node, 0), cx.value(node, 1), cx.value(node, 2)]
    ops.append(cx.value(node, 3) if node.has_input(3) else _zeros(cx, node, (d, 2 * g * h), "bias"))
    lstm = node.op_type == "LSTM"
    if lstm:
        ops.append(cx.value(node, 7) if node.has_input(7) else _zeros(cx, node, (d, 3 * h), "peephole"))
    if node.has_input(5):
        ops.append(cx.value(node, 5))
    if lstm and node.has_input(6):
        if not node.has_input(5):
            raise node.reject("initial_c without initial_h is not supported")
        ops.append(cx.value(node, 6))
    return ops


def _import(cx, node: Node):
    """Emit the layer's op; every ONNX output (Y, Y_h, Y_c) that is named maps to its result."""
    a = _attrs(node)
    kind = _KINDS[node.op_type]
    operands = _operands(cx, node, a)
    try:
        types = lookup(kind).infer([v.type for v in operands], a)
    except InferError as e:
        raise node.reject(str(e)) from None
    stem = next((o for o in node.outputs if o), node.name)
    names = [cx.result_name(o) if j < len(node.outputs) and o else cx.unique(f"{stem}.out{j}")
             for j, o in enumerate(list(node.outputs) + [""] * (len(types) - len(node.outputs)))]
    results = [Value(n, t) for n, t in zip(names, types)]
    cx.graph.ops.append(Op(kind, operands, results, a, Location(node=node.name)))
    for j, o in enumerate(node.outputs[1:len(results)], start=1):
        if o:
            cx.env[o] = results[j]
    return results[0]


for _op in ("RNN", "GRU"):
    handler(_op, _COMMON + (("linear_before_reset",) if _op == "GRU" else ()))(_import)
handler("LSTM", _COMMON + ("input_forget",))(_import)

RNN_OPS = sorted(_KINDS)


def _is_zero_fill(node) -> bool:
    """A ConstantOfShape whose fill value is zero (the default)."""
    if node.op_type != "ConstantOfShape":
        return False
    value = next((a for a in node.attribute if a.name == "value"), None)
    return value is None or not np.any(numpy_helper.to_array(value.t))


def drop_zero_initial_states(model) -> None:
    """Exporters build zero initial states of recurrent layers with ConstantOfShape over the dynamic batch
    dim; an absent initial state is zero by ONNX's definition, so such inputs are dropped (in place) and the
    fill nodes left unused are removed (their shape chains fold at import)."""
    graph = model.graph
    fills = {o: n for n in graph.node if _is_zero_fill(n) for o in n.output}
    for node in graph.node:
        if node.op_type not in _KINDS:
            continue
        for i in (5, 6):
            if i < len(node.input) and node.input[i] in fills:
                node.input[i] = ""
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    dead = [n for n in graph.node if _is_zero_fill(n) and not any(o in used for o in n.output)]
    for n in dead:
        graph.node.remove(n)
