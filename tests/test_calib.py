"""The activation-capture service (mpc/calib.py): captured values against the interpreter and against
onnxruntime's intermediate tensors, batching, selectors, and hooks that substitute an op's outputs.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest
from onnx import numpy_helper

from mpc.calib import capture, select_values
from mpc.data import Dataset
from mpc.frontend import load_onnx
from mpc.ir import parse, run

TOL = 2e-5

MLP = """graph @mlp(%x: f32[N,6]) -> (%y: f32[N,3]) {
  weight @w0 : f32[6,5]
  weight @b0 : f32[5]
  weight @w1 : f32[5,3]
  %0 = nn.matmul(%x, @w0) : f32[N,5]
  %1 = nn.add(%0, @b0) : f32[N,5]
  %h = nn.relu(%1) : f32[N,5]
  %2 = nn.matmul(%h, @w1) : f32[N,3]
  %y = nn.softmax(%2) : f32[N,3]
}
"""


def _mlp():
    rng = np.random.default_rng(3)
    weights = {"w0": rng.standard_normal((6, 5)).astype(np.float32),
               "b0": rng.standard_normal(5).astype(np.float32),
               "w1": rng.standard_normal((5, 3)).astype(np.float32)}
    return parse(MLP, weights), weights


def _data(n: int = 10, seed: int = 4) -> Dataset:
    x = np.random.default_rng(seed).standard_normal((n, 6)).astype(np.float32)
    return Dataset({"x": x}, None, "test")


def test_captured_values_equal_the_interpreters_on_the_same_batches():
    g, _ = _mlp()
    data = _data(10)
    got = capture(g, data, [lambda op: True], batch_size=4)
    slices = [run(g, {"x": data.feeds["x"][i:i + 4]}, keep_all=True) for i in range(0, 10, 4)]
    assert list(got) == ["0", "1", "h", "2", "y"]
    for name, a in got.items():
        np.testing.assert_array_equal(a, np.concatenate([s[name] for s in slices]))
    whole = capture(g, data, ["h", "y"], batch_size=None)
    ref = run(g, data.feeds, keep_all=True)
    for name in ("h", "y"):
        np.testing.assert_array_equal(whole[name], ref[name])


def test_batch_size_changes_results_only_within_float_tolerance():
    g, _ = _mlp()
    data = _data(23)
    runs = [capture(g, data, ["2", "y"], batch_size=b) for b in (1, 5, 7, 64, None)]
    for other in runs[1:]:
        for name in ("2", "y"):
            assert other[name].shape == (23, 3)
            np.testing.assert_allclose(other[name], runs[0][name], rtol=1e-5, atol=1e-6)


CNN = """<ir_version: 8, opset_import: ["" : 17]>
cnn (float[N, 3, 8, 8] x) => (float[N, 10] logits)
    <float[4, 3, 3, 3] cw, float[4] cb, float[4] s, float[4] b, float[4] m, float[4] var, float[10, 64] fw,
     float[10] fb> {
    c = Conv <kernel_shape = [3, 3], pads = [1, 1, 1, 1]> (x, cw, cb)
    n = BatchNormalization <epsilon = 0.001> (c, s, b, m, var)
    r = Relu (n)
    p = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (r)
    f = Flatten (p)
    logits = Gemm <transB = 1> (f, fw, fb)
}"""


def _cnn_model() -> onnx.ModelProto:
    """CNN with seeded random initializers (variances positive)."""
    model = onnx.parser.parse_model(CNN)
    rng = np.random.default_rng(6)
    for vi in model.graph.value_info:
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        a = rng.uniform(0.5, 1.5, shape) if vi.name == "var" else rng.standard_normal(shape)
        model.graph.initializer.append(numpy_helper.from_array(a.astype(np.float32), vi.name))
    del model.graph.value_info[:]
    return model


def test_captured_intermediates_match_onnxruntime():
    import onnxruntime as ort
    model = _cnn_model()
    loaded = load_onnx(model.SerializeToString())
    g = loaded.graph
    kinds = ["nn.conv2d", "nn.batchnorm", "nn.relu", "nn.maxpool2d", "nn.flatten", "nn.gemm"]
    assert [op.kind for op in g.ops] == kinds   # one IR op per ONNX node, in node order
    tensors = [node.output[0] for node in model.graph.node]
    for name in tensors[:-1]:
        model.graph.output.append(onnx.ValueInfoProto(name=name))
    x = np.random.default_rng(5).standard_normal((11, 3, 8, 8)).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    refs = dict(zip([o.name for o in model.graph.output], sess.run(None, {"x": x})))
    got = capture(g, Dataset({loaded.input_names["x"]: x}, None, "test"), list(g.ops), batch_size=4)
    for op, tensor in zip(g.ops, tensors):
        ref, out = refs[tensor], got[op.result.name]
        assert out.shape == ref.shape, tensor
        scale = max(1.0, float(np.abs(ref).max()))
        assert float(np.abs(out.astype(np.float64) - ref).max()) <= TOL * scale, tensor


def test_hook_sees_inputs_and_outputs_and_can_substitute_them():
    g, w = _mlp()
    data = _data(6)
    seen = {}

    def hook(op, inputs, outputs):
        seen[op.kind] = (inputs, outputs)
        if op.kind == "nn.relu":
            return (np.ones_like(outputs[0]),)
        return None

    got = capture(g, data, ["1", "h", "2"], hook=hook, batch_size=None)
    pre, (relu_out,) = seen["nn.relu"][0][0], seen["nn.relu"][1]
    np.testing.assert_array_equal(pre, got["1"])
    np.testing.assert_array_equal(relu_out, np.maximum(pre, 0))        # outputs: the kernel's, before the hook
    np.testing.assert_array_equal(got["h"], np.ones((6, 5), np.float32))  # the substitute flows forward
    np.testing.assert_allclose(got["2"], np.ones((6, 5)) @ w["w1"].astype(np.float64), rtol=1e-6)
    with pytest.raises(ValueError, match="hook gave 2 arrays"):
        capture(g, data, hook=lambda op, i, o: (o[0], o[0]))


def test_kernel_overrides_and_float64():
    g, w = _mlp()
    data = _data(5)
    got = capture(g, data, ["0", "y"], kernels={"nn.softmax": lambda k, x: x}, dtype=np.float64)
    assert got["0"].dtype == np.float64 and got["y"].dtype == np.float64
    ref0 = data.feeds["x"].astype(np.float64) @ w["w0"].astype(np.float64)
    np.testing.assert_allclose(got["0"], ref0, rtol=1e-12)
    h = np.maximum(ref0 + w["b0"].astype(np.float64), 0)
    np.testing.assert_allclose(got["y"], h @ w["w1"].astype(np.float64), rtol=1e-12)   # softmax overridden


def test_selectors_by_name_value_op_and_predicate():
    g, _ = _mlp()
    relu = g.ops[2]
    by = [select_values(g, s) for s in (["h"], [relu.result], [relu], [lambda op: op.kind == "nn.relu"])]
    assert all(v == [relu.result] for v in by)
    assert [v.name for v in select_values(g, ["x", "h", relu, "x"])] == ["x", "h"]
    with pytest.raises(KeyError, match="no value '%nope'"):
        select_values(g, ["nope"])


def test_a_value_without_the_batch_axis_is_refused():
    weights = {"w": np.ones((3, 5), np.float32)}
    g = parse("graph @g(%x: f32[N,3]) -> (%y: f32[N,5]) {\n  weight @w : f32[3,5]\n"
              "  %t = nn.transpose(@w) {perm = [1, 0]} : f32[5,3]\n"
              "  %y = nn.matmul(%x, @w) : f32[N,5]\n}\n", weights)
    data = Dataset({"x": np.zeros((4, 3), np.float32)}, None, "test")
    with pytest.raises(ValueError, match="'%t' .* does not lead with the batch of 2"):
        capture(g, data, ["t"], batch_size=2)
