"""snn.chain and the lowering pass snn-chain against independent references: a plain-Python LIF driven by
float64 currents computed in the test (weights, biases, thresholds and inputs on a dyadic grid, so every
partial sum is exact in float32 and the order of the additions cannot matter: equality is the right
test), and the op-by-op graph (nn.matmul + nn.add + snn.lif + snn.decode) run by the interpreter."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from mpc.backends.numpy_backend import render_model
from snn.test_ops import lif_reference

from mpc.data import npz_bytes
from mpc.ir import parse, print_graph, run
from mpc.passmanager import run_pipeline

RNG = np.random.default_rng(5)
STEPS = 16

SRC = """graph @g(%x: f32[N,6]) -> (%y: f32[N,3]) {{
  weight @th0 : f32[1]
  weight @w1 : f32[6,5]
  weight @b1 : f32[5]
  weight @th1 : f32[5]
  weight @w2 : f32[5,3]
  weight @b2 : f32[3]
  %0 = snn.encode(%x) {{timesteps = 16, dt = 1.0}} : f32[16,N,6]
  %1 = snn.lif(%0, @th0) {{dt = 1.0, {lif}}} : f32[16,N,6]
  %2 = nn.matmul(%1, @w1) : f32[16,N,5]
  %3 = nn.add(%2, @b1) : f32[16,N,5]
  %4 = snn.lif(%3, @th1) {{dt = 1.0, {lif}}} : f32[16,N,5]
  %5 = nn.matmul(%4, @w2) : f32[16,N,3]
  %6 = nn.add(%5, @b2) : f32[16,N,3]
  %y = snn.decode(%6) {{mode = membrane, beta = {rbeta!r}}} : f32[N,3]
}}
"""


def dyadic(shape, lo=-8, hi=9, scale=16, zeros=0.4, rng=RNG):
    """Multiples of 1/scale with a fraction `zeros` set to zero: exact in float32, and so are their sums."""
    v = rng.integers(lo, hi, shape) / scale
    return (v * (rng.random(shape) >= zeros)).astype(np.float32)


def _weights(rng=RNG):
    return {"th0": np.float32([0.75]), "w1": dyadic((6, 5), rng=rng), "b1": dyadic(5, scale=64, zeros=0.0, rng=rng),
            "th1": np.float32([0.25, 0.5, 0.75, 1.0, 0.375]), "w2": dyadic((5, 3), rng=rng),
            "b2": dyadic(3, zeros=0.0, rng=rng)}


def _lif(x, theta, beta, soft, refractory, v0):
    """Spikes [T, N, D] of the plain-Python LIF on currents x [T, N, D] (thresholds per unit of a sample)."""
    steps, n, d = x.shape
    th = np.tile(np.broadcast_to(np.asarray(theta, np.float64).reshape(-1), (d,)), n)
    out = lif_reference(x.reshape(steps, -1).tolist(), th.tolist(), beta, soft, refractory, v0)
    return np.array(out).reshape(x.shape)


def chain_reference(x, w, lif, rbeta):
    """The network written from its definition, in float64."""
    s0 = _lif(np.repeat(x.astype(np.float64)[None], STEPS, 0), w["th0"], *lif)
    s1 = _lif(s0 @ w["w1"].astype(np.float64) + w["b1"], w["th1"], *lif)
    cur = s1 @ w["w2"].astype(np.float64) + w["b2"]
    r = np.zeros(cur.shape[1:])
    for t in range(STEPS):
        r = rbeta * r + cur[t]
    return r / STEPS


@pytest.mark.parametrize("beta, reset, refractory, v0, rbeta", [(1.0, "soft", 0, 0.5, 1.0),
                                                                (0.5, "zero", 0, 0.0, 0.5),
                                                                (0.75, "soft", 2, 0.25, 1.0),
                                                                (1.0, "zero", 1, 0.0, 1.0)])
@pytest.mark.parametrize("density", [0.0, 1.0])
def test_chain_matches_plain_python_and_the_op_by_op_graph(beta, reset, refractory, v0, rbeta, density):
    """Spike for spike (so readouts equal exactly), with dense rows and with compressed rows (density 1)."""
    rng = np.random.default_rng(7)   # the same draws whatever ran before
    w = _weights(rng)
    lif = f"beta = {beta!r}" + (", reset = zero" if reset == "zero" else "") + f", refractory = {refractory}"
    g = parse(SRC.format(lif=lif + f", v0 = {v0!r}", rbeta=rbeta), lambda name, t: w[name])
    x = dyadic((9, 6), 0, 33, zeros=0.2, rng=rng)
    op_by_op = run(g, {"x": x})["y"]
    run_pipeline(g, f"snn-chain{{max_weight_density={density!r}}}")
    assert [op.kind for op in g.ops] == ["snn.chain"]
    assert g.ops[0].attrs.sparse == (density == 1.0,) * 2
    got = run(g, {"x": x})["y"]
    ref = chain_reference(x, w, (beta, reset == "soft", refractory, v0), rbeta)
    assert len(np.unique(ref)) > 5 and got.dtype == np.float32   # spikes reached the readout
    np.testing.assert_array_equal(got, ref.astype(np.float32))
    np.testing.assert_array_equal(got, op_by_op)


def test_chain_prints_and_parses_back():
    w = _weights()
    g = parse(SRC.format(lif="v0 = 0.5", rbeta=1.0), lambda name, t: w[name])
    run_pipeline(g, "snn-chain")
    text = print_graph(g)
    assert "snn.chain(%x, @th0, @w1, @b1, @th1, @w2, @b2)" in text
    assert print_graph(parse(text, lambda name, t: w[name])) == text


def test_chain_rejects_a_wrong_layer_count_by_name():
    w = _weights()
    text = SRC.format(lif="v0 = 0.5", rbeta=1.0)
    g = parse(text, lambda name, t: w[name])
    run_pipeline(g, "snn-chain")
    bad = print_graph(g).replace("beta = [1.0, 1.0]", "beta = [1.0]")
    with pytest.raises(Exception, match=r"snn.chain.*need 2 entries each"):
        parse(bad, lambda name, t: w[name])


def test_model_py_runs_the_fused_chain_like_the_interpreter(tmp_path):
    """model.py (the kernel's source embedded) gives the interpreter's op-by-op values on the same graph."""
    w = _weights()
    g = parse(SRC.format(lif="v0 = 0.5", rbeta=1.0), lambda name, t: w[name])
    x = dyadic((33, 6), 0, 17, zeros=0.2)
    want = run(g, {"x": x})["y"]
    run_pipeline(g, "snn-chain{max_weight_density=0.5}")
    (tmp_path / "model.py").write_text(render_model(g, "lif"))
    (tmp_path / "weights.npz").write_bytes(npz_bytes({k: g.weights[k] for k in g.used_weights()}))
    assert "= snn_chain(" in (tmp_path / "model.py").read_text()
    spec = importlib.util.spec_from_file_location("chain_model", tmp_path / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    np.testing.assert_array_equal(mod.run({"x": x})["y"], want)


def test_chain_leaves_a_recurrent_lif_alone():
    """A block-recurrent lif (third operand w_rec) is not a rate-coded chain: fusing it would drop w_rec."""
    w = dict(_weights(), r1=dyadic((5, 5)))
    src = SRC.replace("weight @th1 : f32[5]\n", "weight @th1 : f32[5]\n  weight @r1 : f32[5,5]\n")
    src = src.replace("snn.lif(%3, @th1)", "snn.lif(%3, @th1, @r1)")
    g = parse(src.format(lif="v0 = 0.5", rbeta=1.0), lambda name, t: w[name])
    x = dyadic((9, 6), 0, 33, zeros=0.2)
    want = run(g, {"x": x})["y"]
    run_pipeline(g, "snn-chain")
    assert "snn.chain" not in [op.kind for op in g.ops]
    assert sum(op.kind == "snn.lif" and len(op.operands) == 3 for op in g.ops) == 1
    np.testing.assert_array_equal(run(g, {"x": x})["y"], want)
