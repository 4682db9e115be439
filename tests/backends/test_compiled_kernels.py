"""The compiled (numba) conv/maxpool/matmul kernels of the NumPy backend, and its epilogue fusion.

Every case is an ONNX model (Conv [+ Relu] [+ MaxPool], or MaxPool alone) converted with
`mpc convert`; the emitted model.py runs and is compared with onnxruntime on the source model.
The geometry sweep covers the kernel's branches: kernel widths 1/3/5/7 (the unrolled rows and the
generic loop), 4-channel blocks plus single-channel tails, groups and depthwise, padding,
dilation, strided convs (rewritten into stride-1 convs over phase images: strides 2 and 3,
rectangular, with dilation, groups, depthwise, pads, 1x1, a stride larger than the kernel, and a
fused pool), pool windows with pads, ceil mode and dilation, float64, and a batch that does not
split evenly over threads. Every float conv runs the compiled kernel, so a sample's result is the
same bytes in any batch on any CPU: no BLAS call, whose rounding depends on the matrix size.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mpc.cli import main

TOL = 2e-5


def _model(x_shape, w_shape, conv: dict, relu: bool, pool: dict | None, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inits = [numpy_helper.from_array((rng.standard_normal(w_shape) * 0.3).astype(dtype), "w"),
             numpy_helper.from_array(rng.standard_normal(w_shape[0]).astype(dtype), "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", **conv)]
    y = "c"
    if relu:
        nodes.append(helper.make_node("Relu", [y], ["r"], name="relu"))
        y = "r"
    if pool is not None:
        nodes.append(helper.make_node("MaxPool", [y], ["p"], name="pool", **pool))
        y = "p"
    nodes.append(helper.make_node("Identity", [y], ["y"], name="out"))
    g = helper.make_graph(nodes, "k", [helper.make_tensor_value_info("x", et, ["N"] + list(x_shape[1:]))],
                          [helper.make_tensor_value_info("y", et, [])], inits)
    return _open_output(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


def _open_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """Let ONNX shape inference fill in the output shape."""
    model.graph.output[0].type.tensor_type.ClearField("shape")
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def _convert_and_run(tmp_path: Path, model: onnx.ModelProto, x: np.ndarray):
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    out = tmp_path / "out"
    assert main(["convert", str(path), "--target", "float", "-o", str(out), "-q"]) == 0
    spec = importlib.util.spec_from_file_location(f"_compiled_{tmp_path.name}", out / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, (out / "model.py").read_text(), module.run({"x": x})["y"]


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["y"], {"x": x})[0]


def _close(got, ref):
    assert got.shape == ref.shape and got.dtype == ref.dtype, (got.shape, ref.shape, got.dtype)
    err = np.abs(got.astype(np.float64) - ref) / np.maximum(1.0, np.abs(ref.astype(np.float64)))
    assert float(err.max(initial=0.0)) <= TOL, f"max relative error {err.max()}"


P22 = {"kernel_shape": [2, 2], "strides": [2, 2]}
CASES = {
    # name: (x_shape, w_shape, conv attrs, relu, pool attrs)
    "k5_relu_pool": ((5, 3, 16, 16), (6, 3, 5, 5), {}, True, P22),
    "k3_pads_relu": ((3, 4, 9, 11), (9, 4, 3, 3), {"pads": [1, 2, 0, 1]}, True, None),
    "k1_pointwise": ((3, 7, 6, 6), (5, 7, 1, 1), {}, False, None),
    "k7_generic_pool": ((2, 2, 15, 15), (4, 2, 7, 7), {"pads": [3, 3, 3, 3]}, True, P22),
    "k2x4_rect": ((3, 3, 10, 12), (8, 3, 2, 4), {}, True, None),
    "grouped": ((3, 6, 10, 10), (8, 3, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}, True, P22),
    "depthwise": ((3, 5, 9, 9), (5, 1, 3, 3), {"group": 5}, False, None),
    "dilated": ((2, 3, 13, 13), (4, 3, 3, 3), {"dilations": [2, 3]}, True, None),
    "strided_pads_pool": ((2, 3, 11, 11), (4, 3, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, True, P22),
    "strided3_dilated": ((2, 3, 17, 16), (5, 3, 3, 3), {"strides": [3, 3], "dilations": [2, 2]}, True, None),
    "strided_dilation_eq_stride": ((2, 2, 13, 13), (4, 2, 3, 3), {"strides": [2, 2], "dilations": [2, 2]},
                                   False, None),
    "strided_grouped": ((3, 6, 12, 12), (8, 3, 3, 3), {"strides": [2, 2], "group": 2, "pads": [1, 1, 1, 1]},
                        False, None),
    "strided_depthwise": ((3, 5, 13, 13), (5, 1, 3, 3), {"strides": [2, 2], "group": 5, "pads": [1, 1, 1, 1]},
                          True, None),
    "strided_rect": ((2, 3, 14, 17), (6, 3, 5, 4), {"strides": [2, 3], "pads": [2, 1, 1, 2]}, True, P22),
    "strided_k7_pool_pads": ((2, 3, 20, 20), (4, 3, 7, 7), {"strides": [2, 2], "pads": [3, 3, 3, 3]}, True,
                             {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "strided_1x1": ((2, 6, 9, 9), (7, 6, 1, 1), {"strides": [2, 2]}, False, None),
    "strided3_k2": ((2, 2, 11, 10), (4, 2, 2, 2), {"strides": [3, 3], "pads": [0, 1, 2, 0]}, True, None),
    "pool_pads_ceil": ((3, 2, 12, 12), (5, 2, 3, 3), {}, True,
                       {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
    "pool_dilated": ((2, 2, 14, 14), (4, 2, 3, 3), {}, False,
                     {"kernel_shape": [2, 3], "strides": [1, 2], "dilations": [2, 1]}),
    "pool_no_relu": ((3, 3, 12, 12), (4, 3, 5, 5), {}, False, P22),
}


def _all_cases_model() -> onnx.ModelProto:
    """Every case as its own branch (x_NAME -> y_NAME) of one model: numba compiles the kernels
    once per dtype, so one model.py keeps the test fast."""
    nodes, inits, ins, outs = [], [], [], []
    for i, name in enumerate(sorted(CASES)):
        x_shape, w_shape, conv, relu, pool = CASES[name]
        m = _model(x_shape, w_shape, conv, relu, pool, seed=i)
        ren = {v: f"{v}_{name}" for v in ("x", "w", "b", "c", "r", "p", "y")}
        for node in m.graph.node:
            node.input[:] = [ren[v] for v in node.input]
            node.output[:] = [ren[v] for v in node.output]
            node.name = f"{node.name}_{name}"
            nodes.append(node)
        for t in m.graph.initializer:
            t.name = ren[t.name]
            inits.append(t)
        ins.append(helper.make_tensor_value_info(f"x_{name}", TensorProto.FLOAT, ["N"] + list(x_shape[1:])))
        out = m.graph.output[0]
        out.name = f"y_{name}"
        outs.append(out)
    g = helper.make_graph(nodes, "cases", ins, outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """(module, model.py text, feeds, onnxruntime outputs) for the all-cases model."""
    import onnxruntime as ort
    tmp = tmp_path_factory.mktemp("compiled")
    model = _all_cases_model()
    onnx.save(model, str(tmp / "cases.onnx"))
    assert main(["convert", str(tmp / "cases.onnx"), "--target", "float", "-o", str(tmp / "out"), "-q"]) == 0
    spec = importlib.util.spec_from_file_location("_compiled_cases", tmp / "out" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(3)
    feeds = {f"x_{n}": rng.standard_normal((5,) + CASES[n][0][1:]).astype(np.float32) for n in sorted(CASES)}
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return module, (tmp / "out" / "model.py").read_text(), feeds, dict(zip(names, sess.run(names, feeds)))


@pytest.mark.parametrize("name", sorted(CASES))
def test_conv_epilogue_matches_onnxruntime(cases, name):
    module, text, feeds, refs = cases
    _, _, _, relu, pool = CASES[name]
    got = module.run(feeds)
    body = text.split("def run(")[1]
    line = next(ln for ln in body.splitlines() if f"x_{name}" in ln and "conv2d_fused(" in ln)
    assert ("relu=True" in line) == relu, line
    assert ("pool=(" in line) == (pool is not None), line
    _close(got[f"y_{name}"], refs[f"y_{name}"])


def test_no_unfused_relu_or_pool_left(cases):
    body = cases[1].split("def run(")[1]
    assert "np.maximum" not in body and "maxpool2d_fast(" not in body


def test_float64_and_odd_batch(tmp_path):
    """onnxruntime has no float64 Conv: the float64 model is checked against its float32 twin
    (same seeded weights, rounded), within float32 rounding."""
    args = ((7, 3, 12, 12), (5, 3, 5, 5), {"pads": [2, 2, 2, 2]}, True, P22)
    x = np.random.default_rng(4).standard_normal((7, 3, 12, 12))
    _, _, got = _convert_and_run(tmp_path, _model(*args, dtype=np.float64), x)
    ref = _ort(_model(*args, dtype=np.float32), x.astype(np.float32))
    assert got.dtype == np.float64 and got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))


def test_relu_used_twice_is_not_fused(tmp_path):
    """A conv result with a second user must stay materialized: the chain stops there."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((4, 2, 3, 3)) * 0.3).astype(np.float32), "w")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Add", ["r", "c"], ["y"], name="add")]
    g = helper.make_graph(nodes, "k", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])], inits)
    model = _open_output(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    x = rng.standard_normal((3, 2, 8, 8)).astype(np.float32)
    _, text, got = _convert_and_run(tmp_path, model, x)
    assert "relu=True" not in text
    _close(got, _ort(model, x))


@pytest.mark.parametrize("attrs", [
    {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    {"kernel_shape": [2, 2], "pads": [1, 0, 1, 1], "strides": [2, 1]},
    {"kernel_shape": [2, 2], "strides": [2, 2]},
])
def test_standalone_maxpool_matches_onnxruntime(tmp_path, attrs):
    nodes = [helper.make_node("MaxPool", ["x"], ["y"], name="pool", **attrs)]
    g = helper.make_graph(nodes, "p", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 9, 10])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])
    model = _open_output(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    x = np.random.default_rng(5).standard_normal((4, 3, 9, 10)).astype(np.float32)
    _, text, got = _convert_and_run(tmp_path, model, x)
    assert "maxpool2d_fast(" in text
    _close(got, _ort(model, x))


def test_float_convs_never_reach_the_numpy_fallback(cases, monkeypatch):
    """Strided float convs run the compiled kernel too: the im2col reference (a BLAS matmul,
    whose rounding depends on the matrix size) is not called."""
    module, _, feeds, refs = cases

    def refuse(*args):
        raise AssertionError("conv2d fallback called")
    monkeypatch.setitem(module.conv2d_fused.__globals__, "conv2d", refuse)  # the kernel module's fallback
    got = module.run(feeds)
    for name in refs:
        _close(got[name], refs[name])


def test_results_do_not_depend_on_thread_count(cases):
    """Each sample is one thread's work in a fixed order: 1 and 2 threads give the same bytes."""
    import numba
    module, _, feeds, _ = cases
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = module.run(feeds)
    finally:
        numba.set_num_threads(before)
    many = module.run(feeds)
    assert sorted(one) == sorted(many)
    for k in one:
        assert one[k].tobytes() == many[k].tobytes(), k


def test_a_sample_gets_the_same_bytes_in_any_batch(cases):
    """Samples are interleaved in blocks (up to 16 per block, fewer in the last one): a sample's
    result is the same alone as in a batch of 37 (blocks of 16, 16 and 5), byte for byte."""
    import onnxruntime as ort
    module, _, _, _ = cases
    rng = np.random.default_rng(6)
    feeds = {f"x_{n}": rng.standard_normal((37,) + CASES[n][0][1:]).astype(np.float32) for n in sorted(CASES)}
    batch = module.run(feeds)
    sess = ort.InferenceSession(_all_cases_model().SerializeToString(), providers=["CPUExecutionProvider"])
    for name, ref in zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)):
        _close(batch[name], ref)
    for i in (0, 15, 16, 36):
        alone = module.run({k: v[i:i + 1] for k, v in feeds.items()})
        for k in batch:
            assert alone[k][0].tobytes() == batch[k][i].tobytes(), (k, i)


def test_dense_layers_after_a_conv_match_onnxruntime(tmp_path):
    """A conv model runs its Gemm on the compiled matmul: blocks of four rows plus a tail row
    block (batch 7), k = 5*5*5 = 125 (four at a time plus one), 9 outputs."""
    rng = np.random.default_rng(7)
    inits = [numpy_helper.from_array((rng.standard_normal((5, 3, 3, 3)) * 0.3).astype(np.float32), "w"),
             numpy_helper.from_array((rng.standard_normal((9, 125)) * 0.1).astype(np.float32), "fw"),
             numpy_helper.from_array(rng.standard_normal(9).astype(np.float32), "fb")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Flatten", ["c"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1)]
    g = helper.make_graph(nodes, "k", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 7, 7])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])], inits)
    model = _open_output(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    x = rng.standard_normal((7, 3, 7, 7)).astype(np.float32)
    module, text, got = _convert_and_run(tmp_path, model, x)
    assert "matmul_fast(" in text
    _close(got, _ort(model, x))
    for i in (0, 6):   # a row of a full block of four, and one of the tail block
        assert module.run({"x": x[i:i + 1]})["y"][0].tobytes() == got[i].tobytes()
