"""The torch lowering (`mpc.backends.torch_backend`) against the interpreter, op kind by op kind.

Every declared op kind has at least one small graph below (attribute variants included) that runs
through `mpc.ir.run` (the reference NumPy kernels) and through the lowered torch module on seeded random
data, in float32 and float64; results must agree to float tolerance. Gradients of the lowering are
checked against finite differences (torch.autograd.gradcheck, float64), and write_back against the
interpreter on the written-back graph.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ltc.torch_cases import LTC_CASES  # tests/ltc: recurrent layers and LTC neurons
from mpc.backends import torch_backend as tb
from onnxc.torch_cases import CASES as ONNXC_CASES
from spatial.torch_cases import SPATIAL_CASES  # tests/spatial (pytest puts tests/ on sys.path)

from mpc.errors import UnsupportedOp
from mpc.ir import known_kinds, parse, print_graph, run

# kinds that never reach the torch lowering, and why
NOT_LOWERED: dict[str, str] = {
    "np.conv2d_fused": "the NumPy backend's lowered op: training runs on the graph before any backend lowering",
    "np.matmul_fast": "the NumPy backend's lowered op: training runs on the graph before any backend lowering",
    **{k: "fixed point: the quantize pass runs after training, on the trained float or MP graph"
       for k in ("fx.quantize", "fx.dequantize", "fx.cast", "fx.add", "fx.matmul", "fx.conv2d", "fx.relu",
                 "fx.maxpool2d", "fx.avgpool2d", "fx.mp_dot", "fx.mp_conv2d", "fx.encode", "fx.lif", "fx.decode",
                 "fx.snn_maxpool")},
    "sp.matmul_csr": "the NumPy backend's lowered op: training runs on the graph before any backend lowering",
    "snn.event_linear": "the NumPy backend's lowered op: training runs on the graph before any backend lowering",
    "snn.chain": "the NumPy backend's lowered op: training runs on the graph before any backend lowering",
    **{k: "the Verilog backend's lowered op: training runs on the graph before any backend lowering"
       for k in ("hw.mp_dense", "hw.mp_conv2d", "hw.mac_dense", "hw.lif", "hw.spike_dense")},
}

# name -> IR text; `{t}` is the float dtype under test, `{u}` the other one (for nn.cast).
CASES = {
    "add_broadcast": """graph @g(%x: {t}[2,3,4], %y: {t}[3,1]) -> (%z: {t}[2,3,4]) {
  %z = nn.add(%x, %y) : {t}[2,3,4]
}""",
    "sub": """graph @g(%x: {t}[2,3,4], %y: {t}[2,3,4]) -> (%z: {t}[2,3,4]) {
  %z = nn.sub(%x, %y) : {t}[2,3,4]
}""",
    "mul_weight": """graph @g(%x: {t}[2,3,4]) -> (%z: {t}[2,3,4]) {
  weight @w : {t}[4]
  %z = nn.mul(%x, @w) : {t}[2,3,4]
}""",
    "div": """graph @g(%x: {t}[2,3,4]) -> (%z: {t}[2,3,4]) {
  weight @pos : {t}[3,1]
  %z = nn.div(%x, @pos) : {t}[2,3,4]
}""",
    "unary_chain": """graph @g(%x: {t}[2,3,4]) -> (%a: {t}[2,3,4], %b: {t}[2,3,4], %c: {t}[2,3,4]) {
  %0 = nn.identity(%x) : {t}[2,3,4]
  %1 = nn.dropout(%0) {ratio = 0.25} : {t}[2,3,4]
  %a = nn.relu(%1) : {t}[2,3,4]
  %b = nn.tanh(%x) : {t}[2,3,4]
  %c = nn.sigmoid(%x) : {t}[2,3,4]
}""",
    "leaky_relu": """graph @g(%x: {t}[2,3,4]) -> (%y: {t}[2,3,4]) {
  %y = nn.leaky_relu(%x) {alpha = 0.2} : {t}[2,3,4]
}""",
    "softmax_axes": """graph @g(%x: {t}[2,3,4]) -> (%a: {t}[2,3,4], %b: {t}[2,3,4]) {
  %a = nn.softmax(%x) {axis = 1} : {t}[2,3,4]
  %b = nn.softmax(%x) : {t}[2,3,4]
}""",
    "clip": """graph @g(%x: {t}[2,3,4]) -> (%a: {t}[2,3,4], %b: {t}[2,3,4]) {
  %a = nn.clip(%x) {min = -0.5, max = 0.3} : {t}[2,3,4]
  %b = nn.clip(%x) {max = 0.3} : {t}[2,3,4]
}""",
    "cast": """graph @g(%x: {t}[2,3]) -> (%y: {u}[2,3]) {
  %y = nn.cast(%x) {to = {u}} : {u}[2,3]
}""",
    "matmul": """graph @g(%x: {t}[2,3,4], %y: {t}[2,4,5]) -> (%a: {t}[2,3,5], %b: {t}[2,3,5]) {
  weight @w : {t}[4,5]
  %a = nn.matmul(%x, @w) : {t}[2,3,5]
  %b = nn.matmul(%x, %y) : {t}[2,3,5]
}""",
    "gemm_trans": """graph @g(%x: {t}[4,3]) -> (%y: {t}[3,5]) {
  weight @w : {t}[5,4]
  weight @c : {t}[5]
  %y = nn.gemm(%x, @w, @c) {alpha = 0.5, beta = 2.0, trans_a = true, trans_b = true} : {t}[3,5]
}""",
    "gemm_plain": """graph @g(%x: {t}[2,4]) -> (%y: {t}[2,5]) {
  weight @w : {t}[4,5]
  %y = nn.gemm(%x, @w) : {t}[2,5]
}""",
    "conv_group_dilation_stride_pads": """graph @g(%x: {t}[2,4,7,7]) -> (%y: {t}[2,6,4,4]) {
  weight @w : {t}[6,2,3,3]
  weight @b : {t}[6]
  %y = nn.conv2d(%x, @w, @b) {strides = [2, 1], pads = [1, 0, 2, 1], dilations = [1, 2], group = 2} : {t}[2,6,4,4]
}""",
    "conv_time_major": """graph @g(%x: {t}[3,2,3,5,5]) -> (%y: {t}[3,2,4,3,3]) {
  weight @w : {t}[4,3,3,3]
  %y = nn.conv2d(%x, @w) : {t}[3,2,4,3,3]
}""",
    "maxpool_ceil_pads": """graph @g(%x: {t}[2,3,8,7]) -> (%y: {t}[2,3,4,4]) {
  %y = nn.maxpool2d(%x) {kernel = [3, 3], strides = [2, 2], pads = [1, 0, 0, 1], ceil_mode = true} : {t}[2,3,4,4]
}""",
    "maxpool_dilation_time_major": """graph @g(%x: {t}[2,2,3,6,6]) -> (%y: {t}[2,2,3,4,5]) {
  %y = nn.maxpool2d(%x) {kernel = [2, 2], dilations = [2, 1]} : {t}[2,2,3,4,5]
}""",
    "avgpool_ceil_pads": """graph @g(%x: {t}[2,3,8,7]) -> (%a: {t}[2,3,4,4], %b: {t}[2,3,4,4]) {
  %a = nn.avgpool2d(%x) {kernel = [3, 3], strides = [2, 2], pads = [1, 0, 0, 1], ceil_mode = true} : {t}[2,3,4,4]
  %b = nn.avgpool2d(%x) {kernel = [3, 3], strides = [2, 2], pads = [1, 0, 0, 1], ceil_mode = true, \
count_include_pad = true} : {t}[2,3,4,4]
}""",
    "avgpool_dilation_time_major": """graph @g(%x: {t}[2,2,3,6,6]) -> (%y: {t}[2,2,3,5,6]) {
  %y = nn.avgpool2d(%x) {kernel = [2, 2], pads = [1, 1, 0, 0], strides = [1, 1], dilations = [2, 1], \
count_include_pad = true} : {t}[2,2,3,5,6]
}""",
    "global_avgpool": """graph @g(%x: {t}[2,3,4,5]) -> (%y: {t}[2,3,1,1]) {
  %y = nn.global_avgpool(%x) : {t}[2,3,1,1]
}""",
    "batchnorm": """graph @g(%x: {t}[2,3,4,5], %v: {t}[4,3]) -> (%y: {t}[2,3,4,5], %z: {t}[4,3]) {
  weight @s : {t}[3]
  weight @b : {t}[3]
  weight @m : {t}[3]
  weight @pos.var : {t}[3]
  %y = nn.batchnorm(%x, @s, @b, @m, @pos.var) {epsilon = 0.001} : {t}[2,3,4,5]
  %z = nn.batchnorm(%v, @s, @b, @m, @pos.var) : {t}[4,3]
}""",
    "flatten_axes": """graph @g(%x: {t}[2,3,4,5]) -> (%a: {t}[24,5], %b: {t}[2,60], %c: {t}[1,120], %d: {t}[6,20], \
%e: {t}[120,1], %f: {t}[2,60]) {
  %a = nn.flatten(%x) {axis = -1} : {t}[24,5]
  %b = nn.flatten(%x) {axis = -3} : {t}[2,60]
  %c = nn.flatten(%x) {axis = -4} : {t}[1,120]
  %d = nn.flatten(%x) {axis = 2} : {t}[6,20]
  %e = nn.flatten(%x) {axis = 4} : {t}[120,1]
  %f = nn.flatten(%x) : {t}[2,60]
}""",
    "reshape_zero_minus_one": """graph @g(%x: {t}[2,3,4]) -> (%a: {t}[2,12], %b: {t}[4,3,2]) {
  %a = nn.reshape(%x) {shape = [0, -1]} : {t}[2,12]
  %b = nn.reshape(%x) {shape = [-1, 3, 2]} : {t}[4,3,2]
}""",
    "transpose": """graph @g(%x: {t}[2,3,4]) -> (%y: {t}[4,2,3]) {
  %y = nn.transpose(%x) {perm = [2, 0, 1]} : {t}[4,2,3]
}""",
    "concat": """graph @g(%x: {t}[2,3,4], %y: {t}[2,2,4], %z: {t}[2,3,1]) -> (%a: {t}[2,5,4], %b: {t}[2,3,6]) {
  weight @w : {t}[2,3,1]
  %a = nn.concat(%x, %y) {axis = 1} : {t}[2,5,4]
  %b = nn.concat(%z, %x, @w) {axis = -1} : {t}[2,3,6]
}""",
    "squeeze_unsqueeze_negative_axes": """graph @g(%x: {t}[2,1,3,1]) -> (%a: {t}[2,3], %b: {t}[1,2,3,1]) {
  %a = nn.squeeze(%x) {axes = [-1, 1]} : {t}[2,3]
  %b = nn.unsqueeze(%a) {axes = [-1, 0]} : {t}[1,2,3,1]
}""",
    "mp_dot_offset": """graph @g(%x: {t}[5,6]) -> (%y: {t}[5,4]) {
  weight @w : {t}[4,6]
  weight @gain : {t}[4]
  weight @off : {t}[4]
  %y = mp.dot(%x, @w, @gain, @off) {gamma = 1.5, c = 0.5} : {t}[5,4]
}""",
    "mp_dot_time_major": """graph @g(%x: {t}[3,2,6]) -> (%y: {t}[3,2,4]) {
  weight @w : {t}[4,6]
  weight @gain : {t}[4]
  %y = mp.dot(%x, @w, @gain) {gamma = 0.75} : {t}[3,2,4]
}""",
    "mp_conv_offset": """graph @g(%x: {t}[2,4,6,6]) -> (%y: {t}[2,6,3,3]) {
  weight @w : {t}[6,2,3,3]
  weight @gain : {t}[6]
  weight @off : {t}[6]
  %y = mp.conv2d(%x, @w, @gain, @off) {gamma = 2.0, c = 2.0, strides = [2, 1], pads = [1, 0, 1, 1], \
dilations = [1, 2], group = 2} : {t}[2,6,3,3]
}""",
    "sp_mask": """graph @g(%x: {t}[3,4]) -> (%y: {t}[3,2]) {
  weight @w : {t}[4,2]
  weight @m : bool[4,2]
  %0 = sp.mask(@w, @m) {nnz = 8, size = 8} : {t}[4,2]
  %y = nn.matmul(%x, %0) : {t}[3,2]
}""",
    "mp_conv_time_major": """graph @g(%x: {t}[2,2,4,6,6]) -> (%y: {t}[2,2,6,4,4]) {
  weight @w : {t}[6,2,3,3]
  weight @gain : {t}[6]
  %y = mp.conv2d(%x, @w, @gain) {gamma = 1.0, group = 2} : {t}[2,2,6,4,4]
}""",
    "hop_relax_feedforward": """graph @g(%x: {t}[5,4]) -> (%y: {t}[5,2]) {
  weight @t0 : {t}[3,4]
  weight @b : {t}[5]
  weight @w10 : {t}[2,3]
  %s = hop.relax(%x, @t0, @b, @w10) {sizes = [3, 2], acts = [relu, identity], blocks = ["1<0"]} : {t}[5,5]
  %y = hop.readout(%s) {offset = 3, size = 2} : {t}[5,2]
}""",
    "hop_relax_jacobi_feedback": """graph @g(%x: {t}[5,4]) -> (%s: {t}[5,5]) {
  weight @t0 : {t}[3,4]
  weight @b : {t}[5]
  weight @w10 : {t}[2,3]
  weight @w01 : {t}[3,2]
  %s = hop.relax(%x, @t0, @b, @w10, @w01) {sizes = [3, 2], acts = [tanh, sigmoid], blocks = ["1<0", "0<1"], \
lam = 1.0, schedule = jacobi, max_iter = 7} : {t}[5,5]
}""",
    "snn_lif_membrane": """graph @g(%x: {t}[2,3]) -> (%y: {t}[2,3]) {
  weight @pos_th : {t}[3]
  %0 = snn.encode(%x) {timesteps = 6, dt = 1.0} : {t}[6,2,3]
  %1 = snn.lif(%0, @pos_th) {dt = 1.0, beta = 0.9, reset = zero, refractory = 1, v0 = 0.25} : {t}[6,2,3]
  %y = snn.decode(%1) {mode = membrane, beta = 0.5} : {t}[2,3]
}""",
    "snn_poisson_maxpool_count": """graph @g(%x: {t}[2,1,4,4]) -> (%y: {t}[2,1,2,2], %z: {t}[2,1,2,2]) {
  %0 = snn.encode(%x) {timesteps = 5, dt = 1.0, mode = poisson, seed = 4} : {t}[5,2,1,4,4]
  %1 = snn.maxpool(%0) {kernel = [2, 2], strides = [2, 2]} : {t}[5,2,1,2,2]
  %y = snn.decode(%1) {mode = count} : {t}[2,1,2,2]
  %z = snn.decode(%1) {mode = first_spike, dt = 0.5} : {t}[2,1,2,2]
}""",
    "snn_nlif_ttfs": """graph @g(%x: {t}[2,3]) -> (%y: {t}[2,2], %z: {t}[2,2]) {
  weight @w : {t}[3,2]
  weight @b : {t}[2]
  %0 = snn.encode(%x) {timesteps = 9, dt = 0.25, mode = ttfs, window = 1.0} : {t}[9,2,3]
  %1 = nn.matmul(%0, @w) : {t}[9,2,2]
  %2 = snn.nlif(%1, @b) {dt = 0.25, tau = 1.0, window = 1.0, layer = 1} : {t}[9,2,2]
  %y = snn.decode(%2) {mode = ttfs, dt = 0.25, window = 1.0, readout = 8} : {t}[2,2]
  %z = snn.decode(%2) {mode = rate} : {t}[2,2]
}""",
}

# the tensor, elementwise, logic and reduction op kinds (mpc/ir/ops_nn_tensor.py)
CASES.update(ONNXC_CASES)
# the spatial, normalization and activation ops (mpc.ir.ops_nn_spatial) keep their cases beside their tests
CASES.update(SPATIAL_CASES)
CASES.update(LTC_CASES)

TOL = {"f32": {"rtol": 1e-5, "atol": 2e-5}, "f64": {"rtol": 1e-10, "atol": 1e-10}}


def _weight(name, ty):
    """Seeded U(-1, 1) weights; names starting with 'pos' (divisors, variances) draw from U(0.5, 1.5)."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    lo = 0.5 if name.startswith("pos") else -1.0
    return rng.uniform(lo, lo + 2 if lo < 0 else lo + 1, ty.shape).astype(ty.dtype.numpy)


def _graph(case: str, t: str):
    u = "f64" if t == "f32" else "f32"
    return parse(CASES[case].replace("{t}", t).replace("{u}", u), _weight)


def _feeds(graph, seed=0):
    rng = np.random.default_rng(seed)
    return {v.name: rng.uniform(-1, 1, v.type.shape).astype(v.type.dtype.numpy) for v in graph.inputs}


def _torch_outputs(module, feeds):
    with torch.no_grad():
        out = module({k: torch.from_numpy(v) for k, v in feeds.items()})
    return {k: v.numpy() for k, v in out.items()}


def _covered_kinds() -> set[str]:
    return {op.kind for case in CASES for op in _graph(case, "f64").ops}


def test_every_op_kind_has_a_torch_lowering_and_a_case_here():
    """A newly declared op kind fails here until it has a lowering and a case (or a documented exclusion)."""
    declared = set(known_kinds())   # tests declare their own kinds only inside ir.fresh_registry()
    kinds = declared - set(NOT_LOWERED)
    assert sorted(kinds - set(tb.lowered_kinds())) == []
    assert sorted(kinds - _covered_kinds()) == []
    assert sorted(set(tb.lowered_kinds()) - declared) == []   # no lowering for a kind that is gone


@pytest.mark.parametrize("t", ["f32", "f64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_lowering_agrees_with_the_interpreter(case, t):
    graph = _graph(case, t)
    feeds = _feeds(graph)
    ref = run(graph, feeds)
    got = _torch_outputs(tb.lower(graph), feeds)
    assert list(got) == [v.name for v in graph.outputs]
    for name, want in ref.items():
        assert got[name].dtype == want.dtype and got[name].shape == want.shape, name
        tol = TOL["f32" if want.dtype == np.float32 else "f64"]
        np.testing.assert_allclose(got[name], want, err_msg=f"{case} {name}", **tol)


def _gradcheck(module, feeds) -> bool:
    """gradcheck of every output w.r.t. every input and every trainable parameter (float64)."""
    names = [n for n, p in module.named_parameters() if p.requires_grad]
    params = [p.detach().clone().requires_grad_() for n, p in module.named_parameters() if p.requires_grad]
    inputs = [torch.from_numpy(a).requires_grad_() for a in feeds.values()]

    def f(*args):
        out = torch.func.functional_call(module, dict(zip(names, args[len(inputs):])),
                                         (dict(zip(feeds, args[:len(inputs)])),))
        return tuple(out.values())

    return torch.autograd.gradcheck(f, inputs + params, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("case", ["conv_group_dilation_stride_pads", "avgpool_ceil_pads", "batchnorm",
                                  "gemm_trans", "flatten_axes", "mp_dot_offset", "mp_conv_offset"])
def test_gradients_match_finite_differences(case):
    graph = _graph(case, "f64")
    module = tb.lower(graph, learn_gamma=True)
    if case.startswith("mp_"):
        assert module.log_gamma.requires_grad and len(module.log_gamma) == 1
    assert _gradcheck(module, _feeds(graph, seed=3))


def test_trainable_option_makes_parameters_or_buffers():
    graph = _graph("batchnorm", "f32")
    every = tb.lower(graph)
    assert sorted(n for n, _ in every.named_parameters()) == ["log_gamma", "params.w0", "params.w1", "params.w2",
                                                              "params.w3"]
    assert not every.log_gamma.requires_grad
    some = tb.lower(graph, trainable={"s", "b"})
    assert [some.keys[w] for w in ("s", "b")] == list(some.params)
    assert sorted(n for n, _ in some.named_buffers()) == ["consts.w2", "consts.w3"]
    none = tb.lower(graph, trainable=False)
    assert list(none.params) == []
    feeds = _feeds(graph)
    for a, b in zip(_torch_outputs(every, feeds).values(), _torch_outputs(none, feeds).values()):
        np.testing.assert_array_equal(a, b)


def test_forward_takes_a_dict_positional_or_keyword_inputs_and_casts_floats():
    graph = _graph("add_broadcast", "f32")
    module = tb.lower(graph)
    f = _feeds(graph)
    x, y = torch.from_numpy(f["x"]), torch.from_numpy(f["y"])
    want = module({"x": x, "y": y})["z"]
    for got in (module(x, y)["z"], module(x, y=y)["z"], module(x.double(), y)["z"]):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    with pytest.raises(TypeError, match="missing input 'y'"):
        module(x)


def test_an_op_kind_without_lowering_is_rejected_naming_it(monkeypatch):
    monkeypatch.delitem(tb.LOWERINGS, "nn.tanh")
    with pytest.raises(UnsupportedOp) as e:
        tb.lower(_graph("unary_chain", "f32"))
    assert str(e.value) == ("unsupported op 'nn.tanh' at <text>:5:3: the torch lowering has no function for "
                            "this op kind")


def test_write_back_adds_new_weights_and_gamma_that_the_interpreter_agrees_with():
    src = """graph @g(%x: f64[5,6]) -> (%y: f64[5,3]) {
  weight @w : f64[4,6]
  weight @gain : f64[4]
  weight @off : f64[4]
  weight @fc : f64[4,3]
  %0 = mp.dot(%x, @w, @gain, @off) {gamma = 1.5, c = 0.5} : f64[5,4]
  %y = nn.matmul(%0, @fc) : f64[5,3]
}"""
    graph = parse(src, _weight)
    before, w0 = print_graph(graph), graph.weights["w"]
    module = tb.lower(graph, trainable={"w", "gain", "fc"}, learn_gamma=True)
    with torch.no_grad():   # stand-in for training: move every trainable value
        for p in module.parameters():
            p.add_(0.125)
    feeds = _feeds(graph)
    trained = _torch_outputs(module, feeds)
    tb.write_back(graph, module, gain_terms=0)
    assert sorted(graph.weights) == ["fc.ft", "gain.ft", "off", "w.ft"]
    op = graph.ops[0]
    assert op.attrs.gamma == pytest.approx(1.5 * np.exp(0.125), rel=1e-12)
    np.testing.assert_allclose(graph.weights["w.ft"], w0 + 0.125)
    np.testing.assert_allclose(run(graph, feeds)["y"], trained["y"], rtol=1e-10, atol=1e-10)
    assert print_graph(graph) != before
    assert print_graph(parse(print_graph(graph), graph.weights)) == print_graph(graph)
    with pytest.raises(ValueError, match="graph changed"):
        tb.write_back(graph, module)
