"""Integer arithmetic against onnxruntime: ONNX Div on integers truncates toward zero and keeps the
operand dtype, through the interpreter (`mpc.ir.run`) and the emitted model.py, whether the Div runs
on inputs or is folded from two initializers; Add, Sub and Mul keep the integer dtype too.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mpc.cli import main
from mpc.frontend.onnx import import_model
from mpc.ir import run

ONNX_TYPE = {np.int32: TensorProto.INT32, np.int64: TensorProto.INT64}
A_SHAPE, B_SHAPE, OUT_SHAPE = [3, 4], [4], [3, 4]   # b broadcasts over a's rows


def _operands(dtype):
    """Mixed signs, exact and inexact quotients, |a| < |b|, no zero divisor."""
    a = np.array([[-7, 7, -3, 3], [-8, 8, 1, -1], [-2147483, 9, 0, -5]], dtype)
    b = np.array([2, -2, -4, 3], dtype)
    return a, b


def _model(op: str, dtype, folded: bool) -> onnx.ModelProto:
    """`z = op(a, b)` with a, b graph inputs, or initializers when `folded`."""
    t = ONNX_TYPE[dtype]
    a, b = _operands(dtype)
    inputs = [helper.make_tensor_value_info("a", t, A_SHAPE), helper.make_tensor_value_info("b", t, B_SHAPE)]
    inits = [numpy_helper.from_array(a, "a"), numpy_helper.from_array(b, "b")] if folded else []
    # a float input keeps the folded graph from having no inputs at all
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    nodes = [helper.make_node(op, ["a", "b"], ["z"]), helper.make_node("Identity", ["x"], ["y"])]
    outputs = [helper.make_tensor_value_info("z", t, OUT_SHAPE), helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]
    graph = helper.make_graph(nodes, "g", [x] if folded else [x] + inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _feeds(dtype, folded: bool) -> dict[str, np.ndarray]:
    a, b = _operands(dtype)
    feeds = {"x": np.array([0.5], np.float32)}
    return feeds if folded else {**feeds, "a": a, "b": b}


def _ort(model: onnx.ModelProto, feeds) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["z"], feeds)[0]


def _import(folder: Path):
    spec = importlib.util.spec_from_file_location(f"_generated_int_{folder.parent.name}", folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _same(got, ref) -> None:
    got = np.asarray(got)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)


CASES = [(op, dtype, folded) for op in ("Div", "Add", "Sub", "Mul")
         for dtype in (np.int32, np.int64) for folded in (False, True)]


@pytest.mark.parametrize("op, dtype, folded", CASES)
def test_interpreter_matches_onnxruntime(op, dtype, folded):
    model = _model(op, dtype, folded)
    graph = import_model(model, "m")[0]
    _same(run(graph, _feeds(dtype, folded))["z"], _ort(model, _feeds(dtype, folded)))


@pytest.mark.parametrize("op, dtype, folded", CASES)
def test_model_py_matches_onnxruntime(tmp_path, capsys, op, dtype, folded):
    model = _model(op, dtype, folded)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert main(["convert", str(path), "--target", "float", "-o", str(tmp_path / "out"), "-q"]) == 0, \
        capsys.readouterr().err
    got = _import(tmp_path / "out").run(_feeds(dtype, folded))["z"]
    _same(got, _ort(model, _feeds(dtype, folded)))


def test_the_example_of_the_issue():
    """[-3, 3] / [2, -2] is [-1, -1] (truncation), not [-1.5, -1.5] nor floor's [-2, -2]."""
    t = TensorProto.INT32
    graph = helper.make_graph([helper.make_node("Div", ["a", "b"], ["z"])], "g",
                              [helper.make_tensor_value_info(n, t, [2]) for n in "ab"],
                              [helper.make_tensor_value_info("z", t, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"a": np.array([-3, 3], np.int32), "b": np.array([2, -2], np.int32)}
    ref = _ort(model, feeds)
    np.testing.assert_array_equal(ref, [-1, -1])
    _same(run(import_model(model, "m")[0], feeds)["z"], ref)


def test_float_div_is_true_division():
    """The float path is unchanged: a / b in the operand dtype, against float64 true division."""
    model = _model("Div", np.int32, False)
    for v in model.graph.input:
        v.type.tensor_type.elem_type = TensorProto.FLOAT
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT
    a, b = (x.astype(np.float32) for x in _operands(np.int32))
    got = run(import_model(model, "m")[0], {"x": np.array([0.5], np.float32), "a": a, "b": b})["z"]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, a.astype(np.float64) / b, rtol=1e-6)


def test_torch_lowering_truncates_integers():
    torch = pytest.importorskip("torch")
    from mpc.backends.torch_backend import lower
    model = _model("Div", np.int64, False)
    feeds = _feeds(np.int64, False)
    module = lower(import_model(model, "m")[0], trainable=False)
    got = module({k: torch.from_numpy(v) for k, v in feeds.items()})["z"]
    _same(got.numpy(), _ort(model, feeds))
