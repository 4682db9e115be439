"""Element types at the graph boundary: float16 and bfloat16 computed in float32 (and said so in
report.json and `mpc inspect`), the integer and bool types kept, a refused type named. Numbers are
checked against onnxruntime."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from cli_helpers import error_line, run_cli
from onnx import TensorProto, helper

from mpc.frontend import load_onnx
from mpc.ir import parse, run
from mpc.onnx_backend import MpcBackend


def _relu(elem: int, op: str = "Relu") -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", elem, ["N", 4])
    y = helper.make_tensor_value_info("y", elem, ["N", 4])
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"], name="op")], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_float16_is_computed_in_float32_and_said_so(tmp_path, capsys):
    path = tmp_path / "half.onnx"
    path.write_bytes(_relu(TensorProto.FLOAT16).SerializeToString())
    rc, _, err = run_cli(capsys, "convert", path, "--target", "float", "-o", tmp_path / "out", "-q")
    assert rc == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["sections"]["Element types"] == {"x": "float16 in the source, computed in float32",
                                                   "y": "float16 in the source, computed in float32"}
    assert report["summary"]["inputs"] == {"x": "f32[N,4]"}
    rc, out, _ = run_cli(capsys, "inspect", path)
    assert rc == 0 and out.startswith("// 'x': float16 in the source, computed in float32\n")
    parse(out)   # the note is a comment: the text still parses
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float16)
    ref = ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = MpcBackend.run_model(_relu(TensorProto.FLOAT16), [x])[0]
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, ref)
    rc, _, err = run_cli(capsys, "verify", path, "--target", "float", "--max-abs-err", "0.001")
    assert rc == 0, err


@pytest.mark.parametrize("elem", [TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64,
                                  TensorProto.UINT8, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64])
def test_integer_inputs_keep_their_type(elem):
    model = _relu(elem, "Identity")   # integer arithmetic is the op handlers' business, not the boundary's
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    loaded = load_onnx(model.SerializeToString())
    assert loaded.graph.inputs[0].type.dtype.numpy == dtype
    info = np.iinfo(dtype)
    x = np.array([[info.min, -1 if info.min else 0, 0, info.max]] * 3, dtype)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = run(loaded.graph, {"x": x})["y"]
    assert got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)


def test_a_refused_element_type_is_named(tmp_path, capsys):
    path = tmp_path / "f8.onnx"
    model = _relu(TensorProto.FLOAT8E4M3FN, "Identity")
    model.opset_import[0].version = 21   # Identity takes float8 from opset 19 on
    path.write_bytes(model.SerializeToString())
    rc, _, err = run_cli(capsys, "inspect", path)
    msg = error_line(err)
    assert rc == 2 and msg.startswith(f"{path}: input 'x' has element type float8e4m3fn, which is not supported "
                                      "(expected one of float, uint8, int8, uint16, int16, int32, int64, bool,")
    assert "float16" in msg and "bfloat16" in msg


def test_bool_inputs_get_both_values_and_verify(tmp_path, capsys):
    from mpc.data import random_data
    path = tmp_path / "b.onnx"
    path.write_bytes(_relu(TensorProto.BOOL, "Identity").SerializeToString())
    feeds = random_data(load_onnx(str(path)).graph, 256, seed=0).feeds["x"]
    assert feeds.dtype == np.bool_ and 0.4 < feeds.mean() < 0.6   # 1,024 fair coin flips
    rc, out, err = run_cli(capsys, "verify", path, "--target", "float", "--json")
    assert rc == 0, err
    assert json.loads(out)["max_abs_err"] == 0.0
