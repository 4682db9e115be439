"""ONNX import: interpreter vs onnxruntime on small models, text round trips, names, errors."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from mpc.errors import BadInput, BadModel, Location, MPCError, UnsupportedOp
from mpc.frontend import load, load_onnx
from mpc.frontend.onnx_ops import supported_ops
from mpc.ir import print_graph, run

from . import models as M

ROOT = Path(__file__).resolve().parents[2]


# -- numerics against onnxruntime ---------------------------------------------------------
@pytest.mark.parametrize("make", [M.cnn, M.matmul_add, M.shapes_mix, M.shape_chain])
def test_models_match_onnxruntime(make):
    M.check(make())


@pytest.mark.parametrize("trans_a,trans_b,alpha,beta",
                         itertools.product((0, 1), (0, 1), (1.0, 0.5), (1.0, -2.0)))
@pytest.mark.parametrize("c_shape", [None, (5,), (4, 5), (1, 5), (4, 1)])
def test_gemm_all_attributes(trans_a, trans_b, alpha, beta, c_shape):
    M.check(M.gemm(trans_a, trans_b, alpha, beta, c_shape))


CONVS = [
    "kernel_shape = [3, 3]",
    "pads = [1, 2, 0, 1]",
    "strides = [2, 3]",
    "dilations = [2, 1], pads = [2, 1, 2, 1]",
    "auto_pad = \"NOTSET\", pads = [1, 1, 1, 1]",
    "auto_pad = \"VALID\", strides = [2, 2]",
    "auto_pad = \"SAME_UPPER\", strides = [2, 2]",
    "auto_pad = \"SAME_LOWER\", strides = [2, 2]",
    "auto_pad = \"SAME_UPPER\", strides = [1, 2], kernel_shape = [3, 3]",
    "auto_pad = \"SAME_LOWER\", strides = [3, 2]",
]


@pytest.mark.parametrize("attrs", CONVS)
def test_conv_attributes(attrs):
    M.check(M.conv(attrs))


@pytest.mark.parametrize("group,w_shape,bias", [(2, (6, 2, 3, 3), True), (4, (8, 1, 3, 3), False),
                                                (1, (6, 4, 1, 1), False)])
def test_conv_groups(group, w_shape, bias):
    M.check(M.conv(f"group = {group}, pads = [1, 1, 1, 1]", w_shape=w_shape, bias=bias))


POOLS = [
    ("MaxPool", "kernel_shape = [3, 3], strides = [2, 2], ceil_mode = 1"),
    ("MaxPool", "kernel_shape = [2, 2], strides = [2, 2], pads = [1, 0, 1, 1]"),
    ("MaxPool", "kernel_shape = [2, 2], dilations = [2, 2], strides = [2, 2], ceil_mode = 1"),
    ("MaxPool", "kernel_shape = [3, 3], strides = [2, 2], auto_pad = \"SAME_UPPER\""),
    ("MaxPool", "kernel_shape = [2, 2], strides = [2, 2], auto_pad = \"SAME_LOWER\""),
    ("MaxPool", "kernel_shape = [2, 2], auto_pad = \"VALID\", storage_order = 0"),
    ("AveragePool", "kernel_shape = [3, 3], strides = [2, 2], ceil_mode = 1"),
    ("AveragePool", "kernel_shape = [3, 3], strides = [2, 2], pads = [1, 1, 1, 1], count_include_pad = 1"),
    ("AveragePool", "kernel_shape = [3, 3], strides = [2, 2], pads = [1, 1, 1, 1], count_include_pad = 0"),
    ("AveragePool", ("kernel_shape = [2, 2], strides = [2, 2], pads = [1, 1, 0, 0], ceil_mode = 1, "
                     "count_include_pad = 1")),
    ("AveragePool", "kernel_shape = [3, 3], strides = [2, 2], auto_pad = \"SAME_UPPER\""),
    ("AveragePool", ("kernel_shape = [2, 2], strides = [2, 2], auto_pad = \"SAME_LOWER\", "
                     "count_include_pad = 1")),
]


@pytest.mark.parametrize("op,attrs", POOLS)
def test_pool_attributes(op, attrs):
    M.check(M.pool(op, attrs))


@pytest.mark.parametrize("op,attrs", [("Relu", ""), ("LeakyRelu", ""), ("LeakyRelu", "alpha = 0.3"),
                                      ("Sigmoid", ""), ("Tanh", ""), ("Softmax", ""), ("Softmax", "axis = 1"),
                                      ("Identity", ""), ("Dropout", ""), ("Clip", "")])
def test_unary_ops(op, attrs):
    M.check(M.unary(op, attrs))


@pytest.mark.parametrize("bounds,consts", [
    (", lo, hi", {"lo": np.float32(-0.5), "hi": np.float32(0.7)}),
    (", lo", {"lo": np.float32(0.1)}),
    (", , hi", {"hi": np.float32(0.2)}),
])
def test_clip_constant_bounds(bounds, consts):
    ins = "".join(f", float {k}" for k in consts)
    model = M.build(f"""
    clip (float[N, 5] x{ins}) => (float[N, 5] y) {{
        y = Clip (x{bounds})
    }}""", consts=consts)
    loaded = M.check(model)
    assert loaded.graph.weights == {}


def test_dropout_unused_mask_and_ratio():
    model = M.build("""
    drop (float[N, 6] x, float ratio) => (float[N, 6] y) {
        y, mask = Dropout <seed = 3> (x, ratio)
    }""", consts={"ratio": np.float32(0.25)}, opset=13)
    M.check(model)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_flatten(axis):
    model = M.build(f"""
    flat (float[2, 3, 4, 5] x) => (float y) {{
        y = Flatten <axis = {axis}> (x)
    }}""", open_outputs=True)
    M.check(model)


def test_flatten_dynamic_batch():
    model = M.build("""
    flat (float[N, 3, 4] x) => (float[N, 12] y) {
        y = Flatten (x)
    }""")
    M.check(model)


def test_squeeze_unsqueeze():
    model = M.build("""
    sq (float[N, 1, 4, 1] x) => (float[N, 4, 1, 1] y) {
        a = Constant <value_ints = [1, -1]> ()
        s = Squeeze (x, a)
        b = Constant <value_ints = [2, 3]> ()
        y = Unsqueeze (s, b)
    }""")
    loaded = M.check(model)
    assert loaded.graph.weights == {}


def test_squeeze_without_axes():
    model = M.build("""
    sq (float[2, 1, 4, 1] x) => (float[2, 4] y) {
        y = Squeeze (x)
    }""")
    M.check(model)


def test_constant_forms_become_weights():
    model = M.build("""
    consts (float[N, 3] x) => (float[N, 3] y) {
        a = Constant <value = float[3] {1.0, 2.0, 3.0}> ()
        b = Constant <value_float = 0.5> ()
        c = Constant <value_floats = [0.25, -1.0, 2.0]> ()
        t = Mul (x, a)
        u = Add (t, b)
        y = Sub (u, c)
    }""")
    loaded = M.check(model)
    assert sorted(loaded.graph.weights) == ["a", "b", "c"]
    assert "@a" in print_graph(loaded.graph)


def test_int_constants_cast_and_div():
    model = M.build("""
    ints (float[N, 3] x) => (float[N, 3] y) {
        i = Constant <value_int = 4> ()
        f = Cast <to = 1> (i)
        j = Constant <value_ints = [1, 2, 3]> ()
        g = Cast <to = 1> (j)
        t = Div (x, f)
        y = Add (t, g)
    }""")
    loaded = M.check(model)
    assert all(w.dtype == np.float32 for w in loaded.graph.weights.values())


def test_cast_computed_to_double():
    model = M.build("""
    cast (float[N, 3] x) => (double[N, 3] y) {
        y = Cast <to = 11> (x)
    }""")
    loaded = M.check(model)
    assert "nn.cast" in print_graph(loaded.graph)


@pytest.mark.parametrize("opset,keepdims", [(17, 1), (17, 0), (18, 1), (18, 0)])
def test_reduce_mean_over_spatial_dims(opset, keepdims):
    if opset < 18:
        node, ins, consts = f"y = ReduceMean <axes = [-1, 2], keepdims = {keepdims}> (x)", "", {}
    else:
        node, ins, consts = f"y = ReduceMean <keepdims = {keepdims}> (x, axes)", ", int64[2] axes", \
            {"axes": np.array([-1, 2], np.int64)}
    model = M.build(f"""
    rm (float[N, 3, 5, 4] x{ins}) => (float y) {{
        {node}
    }}""", consts=consts, opset=opset, open_outputs=True)
    M.check(model)


def test_reduce_mean_over_channels_is_a_reduction():
    """Refused while only spatial means were supported; now nn.reduce (a float64 mean over axis 1 here)."""
    model = M.build("""
    rm (float[N, 3, 5, 4] x) => (float y) {
        y = ReduceMean <axes = [1]> (x)
    }""", opset=17, open_outputs=True)
    graph = load_onnx(model.SerializeToString()).graph
    assert [op.kind for op in graph.ops] == ["nn.reduce"]
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 4)).astype(np.float32)
    got = run(graph, {graph.inputs[0].name: x})[graph.outputs[0].name]
    np.testing.assert_allclose(got, x.astype(np.float64).mean(axis=1, keepdims=True), rtol=1e-6)


def test_global_average_pool():
    model = M.build("""
    gap (float[N, 3, 5, 4] x) => (float[N, 3, 1, 1] y) {
        y = GlobalAveragePool (x)
    }""")
    M.check(model)


def test_identity_of_weight_and_output_wired_to_input():
    model = M.build("""
    ident (float[N, 4] x, float[4] w) => (float[N, 4] y, float[N, 4] x2, float[4] w2) {
        v = Identity (w)
        y = Add (x, v)
        x2 = Identity (x)
        w2 = Identity (w)
    }""", weights=("w",))
    M.check(model)


def test_reshape_with_batch_from_shape_and_mul():
    """Shape -> Slice -> ReduceProd-free product via Mul; the unknown dim becomes -1."""
    model = M.build("""
    chain (float[N, 4, 3, 2] x) => (float[N, 4, 6] y) {
        sh = Shape (x)
        s0 = Constant <value_ints = [0]> ()
        s1 = Constant <value_ints = [2]> ()
        head = Slice (sh, s0, s1)
        a = Constant <value_ints = [2]> ()
        b = Constant <value_ints = [3]> ()
        tail = Slice (sh, a, b)
        c = Constant <value_ints = [2]> ()
        six = Mul (tail, c)
        target = Concat <axis = 0> (head, six)
        y = Reshape (x, target)
    }""")
    loaded = M.check(model)
    assert "shape = [0, 4, 6]" in print_graph(loaded.graph)


def test_reshape_unknown_dim_becomes_minus_one():
    model = M.build("""
    chain (float[N, 2, 6] x) => (float y) {
        sh = Shape <start = 0, end = 1> (x)
        one = Constant <value_ints = [1]> ()
        n = Mul (sh, one)
        twelve = Constant <value_ints = [12]> ()
        target = Concat <axis = 0> (n, twelve)
        y = Reshape (x, target)
    }""", open_outputs=True)
    loaded = M.check(model)
    assert "shape = [-1, 12]" in print_graph(loaded.graph)


def test_reshape_with_two_unknown_dims_is_refused():
    model = M.build("""
    chain (float[N, 2, 6] x) => (float y) {
        sh = Shape <start = 0, end = 1> (x)
        one = Constant <value_ints = [1]> ()
        n = Mul (sh, one)
        six = Constant <value_ints = [6]> ()
        target = Concat <axis = 0> (n, n, six)
        y = Reshape (x, target)
    }""", open_outputs=True)
    with pytest.raises(UnsupportedOp, match="cannot be resolved at import"):
        load_onnx(model.SerializeToString())


def test_opset_range_of_a_model():
    for opset in (13, 18, onnx.defs.onnx_opset_version()):
        M.check(M.build("""
        g (float[N, 4] x) => (float[N, 4] y) {
            y = Relu (x)
        }""", opset=opset))


# -- names, locations, determinism --------------------------------------------------------
def test_names_locations_and_inputs():
    model = M.build("""
    "my graph" (float[batch, 4] "in/put", float[3, 4] "w") => (float[batch, 3] "out:0") {
        t = Gemm <transB = 1> ("in/put", "w")
        "out:0" = Relu (t)
    }""", weights=("w",))
    loaded = load_onnx(model.SerializeToString())
    g = loaded.graph
    assert g.name == "my_graph"
    assert loaded.input_names == {"in/put": "in_put"}
    assert loaded.output_names == {"out:0": "out_0"}
    assert [v.name for v in g.inputs] == ["in_put"] and g.inputs[0].type.shape == ("batch", 4)
    assert [op.loc.node for op in g.ops] == ["Gemm_0", "Relu_1"]
    assert [n.name for n in loaded.onnx_model.graph.node] == ["Gemm_0", "Relu_1"]


def test_unnamed_dynamic_dims_get_stable_names():
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 4])
    z = helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g", [x, z], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    g = load_onnx(model.SerializeToString()).graph
    assert [v.type.shape for v in g.inputs] == [("d0", 4), ("d1", 4)]


def test_readable_weight_names_for_generated_initializers():
    model = M.build("""
    g (float[N, 4] x, float[3, 4] "onnx::Gemm_7", float[3] "onnx::Gemm_8") => (float[N, 3] y) {
        "/fc/Gemm_output_0" = Gemm <transB = 1> (x, "onnx::Gemm_7", "onnx::Gemm_8")
        y = Relu ("/fc/Gemm_output_0")
    }""", weights=("onnx::Gemm_7", "onnx::Gemm_8"))
    model.graph.node[0].name = "/fc/Gemm"
    g = load_onnx(model.SerializeToString()).graph
    assert sorted(g.weights) == ["fc.bias", "fc.weight"]


def test_import_is_deterministic():
    data = M.cnn().SerializeToString()
    assert print_graph(load_onnx(data).graph) == print_graph(load_onnx(data).graph)


def test_load_file_and_mpc_round_trip(tmp_path):
    path = tmp_path / "net.onnx"
    onnx.save(M.cnn(), path)
    loaded = load(str(path))
    assert loaded.source == str(path) and loaded.onnx_model is not None
    text = print_graph(loaded.graph)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.mpc").write_text(text)
    np.savez(tmp_path / "out" / "weights.npz", **loaded.graph.weights)
    again = load(str(tmp_path / "out" / "model.mpc"))
    assert again.onnx_model is None and print_graph(again.graph) == text
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    # exact: the same graph on the same array makes the same BLAS calls (same sizes, same process)
    np.testing.assert_array_equal(run(again.graph, {"x": x})["logits"], run(loaded.graph, {"x": x})["logits"])


def test_onnx_path_never_imports_torch(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(M.matmul_add(), path)
    code = ("import sys; from mpc.frontend import load; load(sys.argv[1]); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, env=env)


# -- errors -------------------------------------------------------------------------------
def test_unsupported_op_names_type_and_node():
    model = M.build("""
    g (float[N, 4] x) => (float[N, 4] y) {
        y = Sin (x)
    }""")
    model.graph.node[0].name = "the_erf"
    with pytest.raises(UnsupportedOp) as e:
        load_onnx(model.SerializeToString())
    assert str(e.value) == ("unsupported op 'Sin' at node 'the_erf': no handler for this op type "
                            f"(supported: {', '.join(supported_ops())})")
    assert "Gemm" in supported_ops()
    assert e.value.op_type == "Sin" and e.value.loc == Location(node="the_erf")


def test_unsupported_attribute_value():
    model = M.pool("MaxPool", "kernel_shape = [2, 2], storage_order = 2")
    with pytest.raises(UnsupportedOp) as e:
        load_onnx(model.SerializeToString())
    assert e.value.attribute == "storage_order" and e.value.value == 2
    assert str(e.value) == ("unsupported attribute storage_order=2 on op 'MaxPool' at node 'MaxPool_0': "
                            "expected 0 (row major) or 1 (column major)")


def test_non_constant_reshape_shape():
    model = M.build("""
    g (float[N, 4] x, int64[2] shape) => (float y) {
        y = Reshape (x, shape)
    }""", open_outputs=True)
    with pytest.raises(UnsupportedOp) as e:
        load_onnx(model.SerializeToString())
    assert str(e.value) == ("unsupported op 'Reshape' at node 'Reshape_0': the shape (input 'shape') must be "
                            "a constant, but it is a graph input, known only at run time: it fixes the output's "
                            "shape")


def test_float_use_of_a_dynamic_shape_is_refused():
    model = M.build("""
    g (float[N, 2] x) => (float[N, 2] y) {
        s = Shape (x)
        f = Cast <to = 1> (s)
        y = Add (x, f)
    }""")
    with pytest.raises(UnsupportedOp) as e:
        load_onnx(model.SerializeToString())
    assert str(e.value) == ("unsupported op 'Cast' at node 'Cast_1': tensor 's' = [N, 2] depends on a dynamic "
                            "dim and cannot be a run-time operand")


def test_unsupported_opset():
    model = M.build("""
    g (float[N, 4] x) => (float[N, 4] y) {
        y = Relu (x)
    }""", opset=11)
    with pytest.raises(UnsupportedOp) as e:
        load_onnx(model.SerializeToString())
    assert str(e.value) == ("unsupported op 'opset': opset version 11 of domain 'ai.onnx' is not supported "
                            f"(expected 13 to {onnx.defs.onnx_opset_version()})")


def test_other_domain_refused():
    model = M.build("""
    g (float[N, 4] x) => (float[N, 4] y) {
        y = com.microsoft.Gelu (x)
    }""")
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(UnsupportedOp) as e:
        load_onnx(model.SerializeToString())
    assert str(e.value) == ("unsupported op 'Gelu' at node 'Gelu_0': domain 'com.microsoft' is not supported "
                            "(only the default ONNX domain); if it only post-processes the outputs (like "
                            "scikit-learn's ZipMap), keep the outputs before it with --outputs NAME,... (graph "
                            "outputs: y)")


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_file(tmp_path, cut):
    data = M.cnn().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(BadModel) as e:
        load(str(path))
    assert str(path) in str(e.value) and e.value.path == str(path)


def test_garbage_and_missing_files(tmp_path):
    garbage = tmp_path / "junk.onnx"
    garbage.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8)))
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    for path in (garbage, empty, tmp_path / "missing.onnx", tmp_path):
        spec = str(path) if path != tmp_path else str(tmp_path / "dir.onnx")
        if path == tmp_path:
            (tmp_path / "dir.onnx").mkdir()
        with pytest.raises(BadModel) as e:
            load(spec)
        assert spec in str(e.value)


def test_unknown_spec_form():
    with pytest.raises(BadInput, match="unknown model spec"):
        load("model.h5")


def _external_model(location: str) -> onnx.ModelProto:
    model = M.matmul_add()
    w = model.graph.initializer[0]
    w.ClearField("raw_data")
    w.ClearField("float_data")
    w.data_location = onnx.TensorProto.EXTERNAL
    w.external_data.add(key="location", value=location)
    return model


def test_external_data_inside_folder_is_read(tmp_path):
    model = M.matmul_add()
    onnx.save(model, tmp_path / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.data", size_threshold=0)
    assert (tmp_path / "m.data").exists()
    M.check(load(str(tmp_path / "m.onnx")).onnx_model)


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_external_data_outside_folder_refused(tmp_path, how):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.zeros(16 * 8, np.float32).tobytes())
    location = {"absolute": str(secret), "dotdot": "../secret.bin", "symlink": "link.bin"}[how]
    if how == "symlink":
        os.symlink(secret, model_dir / "link.bin")
    path = model_dir / "m.onnx"
    path.write_bytes(_external_model(location).SerializeToString())
    with pytest.raises(BadModel, match="outside the model's folder") as e:
        load(str(path))
    assert str(path) in str(e.value)


def test_external_data_from_bytes_refused():
    with pytest.raises(BadModel, match="external data"):
        load_onnx(_external_model("w.bin").SerializeToString())


def test_invalid_model_reports_checker_line():
    model = M.matmul_add()
    model.graph.node[0].input[1] = "nowhere"
    with pytest.raises(BadModel, match="invalid ONNX model"):
        load_onnx(model.SerializeToString())


def test_every_error_is_an_mpc_error_on_corrupted_bytes():
    data = bytearray(M.cnn().SerializeToString())
    rng = np.random.default_rng(0)
    for _ in range(30):
        corrupt = bytearray(data)
        for i in rng.integers(0, len(corrupt), 4):
            corrupt[i] = int(rng.integers(0, 256))
        try:
            load_onnx(bytes(corrupt), label="corrupt.onnx")
        except MPCError:
            pass
