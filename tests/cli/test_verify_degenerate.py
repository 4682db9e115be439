"""`mpc verify` on degenerate models (0-d inputs and outputs, empty outputs, integer inputs, a model
onnxruntime cannot run): exit 0 with the numbers checked against onnxruntime, or one `mpc: error:`
line with exit 2; never an internal error (exit 1).
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from cli_helpers import error_line, run_cli
from onnx import TensorProto, helper, numpy_helper

from mpc.cli import main
from mpc.driver.verify import _join

F, I32, I64 = TensorProto.FLOAT, TensorProto.INT32, TensorProto.INT64


def _save(tmp_path, nodes, inputs, outputs, inits=(), name="m") -> str:
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info(*i) for i in inputs],
                              [helper.make_tensor_value_info(*o) for o in outputs], list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return str(path)


def _verify(capsys, path, *extra) -> tuple[int, dict, str]:
    rc, out, err = run_cli(capsys, "verify", path, "--target", "float", "--json", "-q", *extra)
    return rc, (json.loads(out) if rc == 0 else {}), err


def _ort(path, feeds) -> list[np.ndarray]:
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)


def _scalar_model(tmp_path) -> str:
    """y = tanh(s) * 2: a 0-d input and a 0-d output."""
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    return _save(tmp_path, [helper.make_node("Tanh", ["s"], ["t"]), helper.make_node("Mul", ["t", "two"], ["y"])],
                 [("s", F, [])], [("y", F, [])], [two])


def test_zero_d_input_and_output_are_one_sample(tmp_path, capsys):
    rc, r, err = _verify(capsys, _scalar_model(tmp_path))
    assert rc == 0, err
    assert r["samples"] == 1 and r["top1_agreement"] is None
    assert r["max_abs_err"] <= 1e-6


def test_zero_d_input_from_data_file(tmp_path, capsys):
    path = _scalar_model(tmp_path)
    np.savez(tmp_path / "d.npz", s=np.array(0.75, np.float32))
    rc, r, err = _verify(capsys, path, "--data", tmp_path / "d.npz")
    assert rc == 0, err
    assert r["samples"] == 1 and r["max_abs_err"] <= 1e-6
    assert abs(float(_ort(path, {"s": np.array(0.75, np.float32)})[0]) - 2 * np.tanh(0.75)) < 1e-6


@pytest.mark.parametrize("n", [3, 300])
def test_zero_d_output_of_a_static_input(tmp_path, capsys, n):
    """A dot product of two vectors: a 0-d output, the input's n entries are not samples to slice."""
    w = np.random.default_rng(4).uniform(-1, 1, n).astype(np.float32)
    path = _save(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["y"])],
                 [("x", F, [n])], [("y", F, [])], [numpy_helper.from_array(w, "w")])
    x = np.random.default_rng(5).uniform(-1, 1, n).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    rc, r, err = _verify(capsys, path, "--data", tmp_path / "d.npz")
    assert rc == 0, err
    assert r["top1_agreement"] is None and r["max_abs_err"] <= 1e-5
    assert abs(float(_ort(path, {"x": x})[0]) - x.astype(np.float64) @ w) < 1e-5


def test_empty_output_has_zero_error_and_no_agreement(tmp_path, capsys):
    """A matmul by a [4, 0] weight: a [N, 0] output compares as equal, with no class to agree on."""
    w = numpy_helper.from_array(np.zeros((4, 0), np.float32), "w")
    path = _save(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["y"])],
                 [("x", F, ["N", 4])], [("y", F, ["N", 0])], [w])
    rc, r, err = _verify(capsys, path, "--samples", 5)
    assert rc == 0, err
    assert _ort(path, {"x": np.ones((5, 4), np.float32)})[0].shape == (5, 0)
    assert (r["samples"], r["max_abs_err"], r["mean_abs_err"], r["max_rel_err"]) == (5, 0.0, 0.0, 0.0)
    assert r["top1_agreement"] is None


@pytest.mark.parametrize("dtype", [I32, I64])
def test_integer_inputs_get_nonzero_random_data(tmp_path, capsys, dtype):
    """Div by an integer input: the default data avoids zero, so onnxruntime runs and agrees."""
    path = _save(tmp_path, [helper.make_node("Div", ["a", "b"], ["y"])],
                 [("a", dtype, ["N", 3]), ("b", dtype, ["N", 3])], [("y", dtype, ["N", 3])])
    rc, r, err = _verify(capsys, path, "--samples", 40)
    assert rc == 0, err
    assert r["samples"] == 40 and r["max_abs_err"] == 0.0
    assert "40 random samples" in r["data"]


def test_integer_division_by_zero_in_data_is_one_error_line(tmp_path, capfd):
    """--data wins over the default range: zeros reach onnxruntime, whose failure is a BadModel line
    (capfd: onnxruntime's own log, written by C++ to fd 2, must stay quiet too)."""
    path = _save(tmp_path, [helper.make_node("Div", ["a", "b"], ["y"])],
                 [("a", I32, ["N", 2]), ("b", I32, ["N", 2])], [("y", I32, ["N", 2])], name="divz")
    np.savez(tmp_path / "d.npz", a=np.ones((3, 2), np.int32), b=np.zeros((3, 2), np.int32))
    with pytest.raises(Exception, match="(?i)division by zero"):
        _ort(path, {"a": np.ones((3, 2), np.int32), "b": np.zeros((3, 2), np.int32)})
    capfd.readouterr()
    rc = main(["verify", path, "--target", "float", "-q", "--data", str(tmp_path / "d.npz")])
    err = capfd.readouterr().err
    assert rc == 2
    msg = error_line(err)
    assert msg.startswith(f"{path}: onnxruntime failed to run it: ") and "division by zero" in msg.lower(), msg


def test_join_stacks_zero_d_slices_and_concatenates_the_rest():
    """Outputs of several slices: batch axes are concatenated, 0-d outputs get one entry per slice."""
    assert _join([np.float32(1.5)]).shape == ()
    np.testing.assert_array_equal(_join([np.array(1.0), np.array(2.0)]), [1.0, 2.0])
    np.testing.assert_array_equal(_join([np.ones((2, 3)), np.zeros((1, 3))]), np.r_[np.ones((2, 3)), np.zeros((1, 3))])


def _biased(tmp_path, bias) -> tuple[str, str]:
    """y = x + bias over 3 classes, with a data file of 50 U(0, 1) samples."""
    b = numpy_helper.from_array(np.array(bias, np.float32), "b")
    path = _save(tmp_path, [helper.make_node("Add", ["x", "b"], ["y"])], [("x", F, ["N", 3])],
                 [("y", F, ["N", 3])], [b])
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(6).uniform(0, 1, (50, 3)).astype(np.float32))
    return path, str(tmp_path / "d.npz")


def test_one_source_class_for_every_sample_is_flagged(tmp_path, capsys):
    path, data = _biased(tmp_path, [0.0, 0.0, 5.0])
    x = np.load(data)["x"]
    assert set(_ort(path, {"x": x})[0].argmax(1)) == {2}   # the source really has one class
    rc, r, err = _verify(capsys, path, "--data", data)
    assert rc == 0, err
    assert r["top1_agreement"] == 1.0 and r["top1_degenerate"] is True
    assert r["top1_note"] == "all 50 samples have source class 2: agreement says little"
    rc, out, err = run_cli(capsys, "verify", path, "--target", "float", "--data", data, "-q")
    assert rc == 0, err
    assert "top-1 agreement  100.00%   (all 50 samples have source class 2: agreement says little)" in out


def test_varied_source_classes_are_not_flagged(tmp_path, capsys):
    path, data = _biased(tmp_path, [0.0, 0.0, 0.0])
    assert len(set(_ort(path, {"x": np.load(data)["x"]})[0].argmax(1))) == 3
    rc, r, err = _verify(capsys, path, "--data", data)
    assert rc == 0, err
    assert r["top1_degenerate"] is False and r["top1_note"] is None
    rc, out, _ = run_cli(capsys, "verify", path, "--target", "float", "--data", data, "-q")
    assert "says little" not in out


def test_no_class_axis_is_neither(tmp_path, capsys):
    rc, r, err = _verify(capsys, _scalar_model(tmp_path))
    assert rc == 0, err
    assert r["top1_degenerate"] is None and r["top1_note"] is None
