"""fuse: folding masks and removing dead neurons keeps the outputs of the un-fused source model as
onnxruntime computes them, and removes exactly the neurons whose incoming weights (and bias) are zero."""
import numpy as np
import onnxruntime as ort
import pytest
from frontend.models import build
from onnx import numpy_helper

from mpc.frontend import load_onnx
from mpc.ir import parse, print_graph, run
from mpc.passmanager import PassContext, run_pipeline

MLP = """
agraph (float[N, 6] x, float[5, 6] w1, float[5] b1, float[4, 5] w2, float[4] b2, float[3, 4] w3) => (float[N, 3] y) {
  h = Gemm <transB = 1> (x, w1, b1)
  r = Relu (h)
  h2 = Gemm <transB = 1> (r, w2, b2)
  r2 = Tanh (h2)
  w3t = Transpose <perm = [1, 0]> (w3)
  y = MatMul (r2, w3t)
}
"""

CNN = """
agraph (float[N, 2, 6, 6] x, float[4, 2, 3, 3] k, float[4] kb, float[3, 16] w) => (float[N, 3] y) {
  c = Conv <pads = [1, 1, 1, 1]> (x, k, kb)
  r = Relu (c)
  p = MaxPool <kernel_shape = [3, 3], strides = [3, 3]> (r)
  f = Flatten <axis = 1> (p)
  y = Gemm <transB = 1> (f, w)
}
"""


def _mlp(dead_rows=(), live_bias_rows=(), seed=0):
    rng = np.random.default_rng(seed)
    w = {"w1": rng.standard_normal((5, 6)), "b1": rng.standard_normal(5), "w2": rng.standard_normal((4, 5)),
         "b2": rng.standard_normal(4), "w3": rng.standard_normal((3, 4))}
    for layer, row in dead_rows:            # a dead neuron: zero incoming weights and zero bias
        w[f"w{layer}"][row] = 0.0
        w[f"b{layer}"][row] = 0.0
    for layer, row, bias in live_bias_rows:  # zero weights and a bias: the constant relu(bias)
        w[f"w{layer}"][row] = 0.0
        w[f"b{layer}"][row] = bias
    return build(MLP, consts={k: v.astype(np.float32) for k, v in w.items()})


def _cnn(dead_channels=(), seed=0):
    rng = np.random.default_rng(seed)
    w = {"k": rng.standard_normal((4, 2, 3, 3)), "kb": rng.standard_normal(4), "w": rng.standard_normal((3, 16))}
    for c in dead_channels:
        w["k"][c] = 0.0
        w["kb"][c] = 0.0
    return build(CNN, consts={k: v.astype(np.float32) for k, v in w.items()})


def _fused(model, pipeline="canonicalize,fuse,dce"):
    graph = load_onnx(model.SerializeToString()).graph
    ctx = PassContext()
    records = run_pipeline(graph, pipeline, ctx)
    return graph, records, ctx


def _check_against_ort(model, graph, shape):
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    got = run(graph, {"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _matmul_shapes(graph):
    return [tuple(op.operands[1].type.shape) for op in graph.ops if op.kind == "nn.matmul"]


def test_nothing_dead_keeps_shapes_and_outputs():
    model = _mlp()
    graph, _records, _ = _fused(model)
    assert _matmul_shapes(graph) == [(6, 5), (5, 4), (4, 3)]
    _check_against_ort(model, graph, (7, 6))


def test_dead_neurons_are_removed_exactly_and_outputs_match_the_unfused_source():
    model = _mlp(dead_rows=[(1, 0), (1, 3), (2, 2)], live_bias_rows=[(1, 1, 0.7), (1, 4, -0.7)])
    graph, records, _ctx = _fused(model)
    # layer 1 loses neurons 0, 3 and 4 (relu(-0.7) = 0), keeps neuron 1 (the constant relu(0.7) = 0.7)
    # and neuron 2; layer 2 loses neuron 2
    assert _matmul_shapes(graph) == [(6, 2), (2, 3), (3, 3)]
    assert records[-2].stats["neurons_removed"] == 4
    _check_against_ort(model, graph, (7, 6))
    text = print_graph(graph)
    assert print_graph(parse(text, graph.weights)) == text


def test_dead_conv_channels_are_removed_through_relu_pool_and_flatten():
    model = _cnn(dead_channels=[1, 2])
    graph, _records, ctx = _fused(model)
    conv = next(op for op in graph.ops if op.kind == "nn.conv2d")
    fc = next(op for op in graph.ops if op.kind == "nn.matmul")
    assert conv.operands[1].type.shape == (2, 2, 3, 3)
    assert fc.operands[1].type.shape == (8, 3)       # 2 channels x 2 x 2 pooled positions
    _check_against_ort(model, graph, (3, 2, 6, 6))
    table = ctx.report.sections["Sparsity"]
    assert table[0]["macs_before"] == 4 * 2 * 9 * 36 and table[0]["macs_after"] == 2 * 2 * 9 * 36


def test_all_ones_masks_change_nothing():
    model = _cnn()
    graph, _, _ = _fused(model, "canonicalize,lbi-prune{method=magnitude,sparsity=0.0,refit=false},fuse,dce")
    assert not any(op.kind == "sp.mask" for op in graph.ops)
    x = np.random.default_rng(5).standard_normal((3, 2, 6, 6)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(run(graph, {"x": x})["y"], run(_fused(model)[0], {"x": x})["y"])
    np.testing.assert_allclose(run(graph, {"x": x})["y"], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("group", ["none", "rows"])
def test_pruned_and_fused_model_matches_onnxruntime_on_the_masked_source(group):
    """Masks from magnitude pruning, written back into the ONNX source as zeros, give the same outputs
    in onnxruntime as mpc's fused graph."""
    model = _mlp()
    graph, _, _ = _fused(model, f"canonicalize,lbi-prune{{method=magnitude,sparsity=0.6,group={group},"
                                "refit=false}")
    masks = {op.operands[0].name: op.operands[1] for op in graph.ops if op.kind == "sp.mask"}
    source = _mlp()
    for init in source.graph.initializer:
        name = {"w1": "w1.T", "w2": "w2.T", "w3": "w3t"}.get(init.name)
        key = next((k for k in masks if name and k.startswith(init.name)), None)
        if key is None:
            continue
        mask = graph.weights[masks[key].name]
        arr = numpy_helper.to_array(init)
        init.CopyFrom(numpy_helper.from_array(np.where(mask.T, arr, 0).astype(np.float32), init.name))
    run_pipeline(graph, "fuse,dce", PassContext())
    assert not any(op.kind == "sp.mask" for op in graph.ops)
    _check_against_ort(source, graph, (7, 6))


def test_lbi_kernel_groups_mask_whole_conv_kernels_and_fusing_keeps_the_masked_numbers():
    model = _cnn()
    graph, _, _ = _fused(model, "canonicalize,lbi-prune{sparsity=0.5,group=kernels}")
    conv_mask = next(graph.weights[op.operands[1].name] for op in graph.ops
                     if op.kind == "sp.mask" and op.result.type.rank == 4)
    per_kernel = conv_mask.reshape(8, 9)
    assert np.all(per_kernel.all(axis=1) | ~per_kernel.any(axis=1))     # each 3x3 kernel kept or dropped whole
    assert per_kernel.all(axis=1).sum() == 4                            # half of the 4x2 kernels
    x = np.random.default_rng(6).standard_normal((3, 2, 6, 6)).astype(np.float32)
    masked = run(graph, {"x": x})["y"]
    run_pipeline(graph, "fuse,dce", PassContext())
    np.testing.assert_allclose(run(graph, {"x": x})["y"], masked, rtol=1e-6, atol=1e-6)
