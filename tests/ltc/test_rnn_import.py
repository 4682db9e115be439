"""ONNX RNN/GRU/LSTM import: mpc's interpreter matches onnxruntime on torch exports (both exporters) and on
models built with onnx.helper (layout 1, reverse, bidirectional, initial states, all outputs)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mpc.errors import UnsupportedOp
from mpc.frontend import load_onnx
from mpc.ir import run

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def _ort(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _mpc(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    loaded = load_onnx(model.SerializeToString(), static_batch=True)
    out = run(loaded.graph, {loaded.input_names[k]: v for k, v in feeds.items()})
    return [out[loaded.output_names[o.name]] for o in model.graph.output]


def _helper_model(op: str, direction: str, layout: int, states: bool, hidden: int = 5, **attrs):
    """One RNN-family node with every output, random weights, optional initial states as graph inputs."""
    rng = np.random.default_rng(7)
    d, g, t_len, n, i = (2 if direction == "bidirectional" else 1), GATES[op], 4, 3, 6
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, s).astype(np.float32), nm) for nm, s in
             [("W", (d, g * hidden, i)), ("R", (d, g * hidden, hidden)), ("B", (d, 2 * g * hidden))]]
    if op == "LSTM":
        inits.append(numpy_helper.from_array(rng.normal(0, 0.5, (d, 3 * hidden)).astype(np.float32), "P"))
    xs = (t_len, n, i) if layout == 0 else (n, t_len, i)
    ss = (d, n, hidden) if layout == 0 else (n, d, hidden)
    ys = (t_len, d, n, hidden) if layout == 0 else (n, t_len, d, hidden)
    ins = [helper.make_tensor_value_info("X", TensorProto.FLOAT, xs)]
    names = ["X", "W", "R", "B", ""]
    outs = [("Y", ys), ("Y_h", ss)] + ([("Y_c", ss)] if op == "LSTM" else [])
    if states:
        ins.append(helper.make_tensor_value_info("h0", TensorProto.FLOAT, ss))
        names.append("h0")
        if op == "LSTM":
            ins.append(helper.make_tensor_value_info("c0", TensorProto.FLOAT, ss))
            names.append("c0")
    if op == "LSTM":
        names += [""] * (7 - len(names)) + ["P"]
    node = helper.make_node(op, names, [o for o, _ in outs], name="layer", hidden_size=hidden,
                            direction=direction, layout=layout, **attrs)
    graph = helper.make_graph([node], "g", ins, [helper.make_tensor_value_info(o, TensorProto.FLOAT, s)
                                                 for o, s in outs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    feeds = {v.name: rng.normal(0, 1, [dd.dim_value for dd in v.type.tensor_type.shape.dim]).astype(np.float32)
             for v in ins}
    return model, feeds


CASES = [(op, dr, lay, st) for op in ("RNN", "GRU", "LSTM") for dr, lay, st in
         [("forward", 0, False), ("reverse", 1, True), ("bidirectional", 0, True), ("bidirectional", 1, False)]]


@pytest.mark.parametrize("op, direction, layout, states", CASES)
def test_helper_models_match_onnxruntime(op, direction, layout, states):
    """onnxruntime has no layout 1: its oracle is the layout-0 model on transposed data, outputs transposed back."""
    model, feeds = _helper_model(op, direction, layout, states)
    want = _ort(model, feeds) if layout == 0 else _ort_batch_first(op, direction, states, feeds)
    for got, w in zip(_mpc(model, feeds), want, strict=True):
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-5)


def _ort_batch_first(op: str, direction: str, states: bool, feeds: dict) -> list[np.ndarray]:
    model0, _ = _helper_model(op, direction, 0, states)   # same seed: the same weights
    feeds0 = {k: np.ascontiguousarray(np.swapaxes(v, 0, 1)) for k, v in feeds.items()}
    y, *rest = _ort(model0, feeds0)
    return [np.transpose(y, (2, 0, 1, 3))] + [np.swapaxes(s, 0, 1) for s in rest]


def test_gru_linear_before_reset_both_ways():
    for lbr in (0, 1):
        model, feeds = _helper_model("GRU", "forward", 0, True, linear_before_reset=lbr)
        for got, want in zip(_mpc(model, feeds), _ort(model, feeds), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attr, value, message", [("clip", 1.0, "clip"), ("activations", ["Relu"], "activations")])
def test_unsupported_attributes_are_rejected_by_name(attr, value, message):
    model, _ = _helper_model("RNN", "forward", 0, False, **{attr: value})
    with pytest.raises(UnsupportedOp, match=message):
        load_onnx(model.SerializeToString(), static_batch=True)


def test_sequence_lens_is_rejected_by_name():
    model, _ = _helper_model("GRU", "forward", 0, False)
    model.graph.node[0].input[4] = "lens"
    model.graph.input.append(helper.make_tensor_value_info("lens", TensorProto.INT32, (3,)))
    with pytest.raises(UnsupportedOp, match="sequence_lens"):
        load_onnx(model.SerializeToString(), static_batch=True)


def _torch_layer(kind: str, bidirectional: bool):
    import torch
    torch.manual_seed(0)
    cls = {"RNN": torch.nn.RNN, "GRU": torch.nn.GRU, "LSTM": torch.nn.LSTM}[kind]
    layer = cls(6, 5, batch_first=False, bidirectional=bidirectional).eval()

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, x):
            return self.layer(x)[0]
    return Wrap().eval()


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("kind, bidirectional", [("RNN", False), ("GRU", True), ("LSTM", False)])
def test_torch_exports_match_onnxruntime(tmp_path, kind, bidirectional, dynamo):
    import torch
    x = torch.randn(7, 3, 6, generator=torch.Generator().manual_seed(1))
    path = tmp_path / "m.onnx"
    module = _torch_layer(kind, bidirectional)
    if dynamo:
        torch.onnx.export(module, (x,), dynamo=True, opset_version=18, input_names=["x"],
                          output_names=["y"], verbose=False).save(str(path))
    else:
        torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"])
    model = onnx.load(str(path))
    feeds = {"x": x.numpy()}
    got, want = _mpc(model, feeds), _ort(model, feeds)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[0], module(x).detach().numpy(), rtol=1e-4, atol=1e-5)
