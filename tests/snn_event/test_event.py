"""snn.event_linear and the lowering pass snn-event against independent references: a plain-Python LIF
driven by float64 currents computed in the test (weights on a dyadic grid, so every partial sum is exact
in float32 and the order of the additions cannot matter: spike-for-spike equality is the right test)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from mpc.backends.numpy_backend import render_model
from snn.test_ops import lif_reference

from mpc.data import Dataset, npz_bytes
from mpc.ir import parse, print_graph, run
from mpc.passmanager import PassContext, run_pipeline

RNG = np.random.default_rng(11)


def dyadic(shape, scale=16):
    """Small multiples of 1/scale: exact in float32, and so are their sums."""
    return (RNG.integers(-8, 9, shape) / scale).astype(np.float32)


def currents_reference(x, w, b):
    """x [T, N, D] spikes -> float64 currents x·w + b, by loops over the spikes."""
    steps, n, d = x.shape
    out = np.zeros((steps, n, w.shape[1]))
    for t in range(steps):
        for q in range(n):
            out[t, q] = b.astype(np.float64) + sum((w[i].astype(np.float64) for i in range(d) if x[t, q, i]), 0.0)
    return out


def _module(tmp_path, g, name):
    (tmp_path / "model.py").write_text(render_model(g, "lif"))
    (tmp_path / "weights.npz").write_bytes(npz_bytes({k: g.weights[k] for k in g.used_weights()}))
    spec = importlib.util.spec_from_file_location(name, tmp_path / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ONE = """graph @g(%x: f32[16,N,9]) -> (%y: f32[16,N,5]) {{
  weight @w : f32[9,5]
  weight @b : f32[5]
  weight @th : f32[5]
  %y = snn.event_linear(%x, @w, @b{theta}) {{{attrs}}} : f32[16,N,5]
}}
"""


@pytest.mark.parametrize("beta, reset, refractory, v0", [(1.0, "soft", 0, 0.5), (0.5, "zero", 0, 0.0),
                                                          (0.75, "soft", 2, 0.25), (1.0, "zero", 1, 0.0)])
def test_fused_layer_matches_plain_python_lif_spike_for_spike(tmp_path, beta, reset, refractory, v0):
    w, b = dyadic((9, 5)), dyadic(5, 64)
    th = np.float32([0.25, 0.5, 0.75, 1.0, 0.375])
    x = (RNG.random((16, 3, 9)) < 0.3).astype(np.float32)
    attrs = f"beta = {beta!r}" + (", reset = zero" if reset == "zero" else "") + f", refractory = {refractory}"
    attrs += f", v0 = {v0!r}"
    g = parse(ONE.format(theta=", @th", attrs=attrs), {"w": w, "b": b, "th": th})
    assert parse(print_graph(g), {"w": w, "b": b, "th": th}) is not None   # the text form reads back
    cur = currents_reference(x, w, b).reshape(16, 15).tolist()
    want = np.array(lif_reference(cur, np.tile(th, 3).astype(np.float64).tolist(), beta, reset == "soft",
                                  refractory, v0)).reshape(16, 3, 5)
    got = run(g, {"x": x})["y"]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(_module(tmp_path, g, f"ev_{reset}_{refractory}").run({"x": x})["y"], want)
    assert 0 < want.sum() < want.size   # both outcomes occur


def test_without_theta_the_op_returns_the_currents():
    w, b = dyadic((9, 5)), dyadic(5, 64)
    x = (RNG.random((16, 4, 9)) < 0.2).astype(np.float32)
    g = parse(ONE.format(theta="", attrs="density = 0.2"), {"w": w, "b": b, "th": np.ones(5, np.float32)})
    np.testing.assert_array_equal(run(g, {"x": x})["y"], currents_reference(x, w, b))


MLP = """graph @g(%x: f32[N,6]) -> (%y: f32[N,3]) {
  weight @th1 : f32[1]
  weight @w2 : f32[6,7]
  weight @b2 : f32[7]
  weight @th2 : f32[7]
  weight @w3 : f32[7,3]
  %0 = snn.encode(%x) {timesteps = 24, dt = 1.0} : f32[24,N,6]
  %1 = snn.lif(%0, @th1) {dt = 1.0, v0 = 0.5} : f32[24,N,6]
  %2 = nn.matmul(%1, @w2) : f32[24,N,7]
  %3 = nn.add(%2, @b2) : f32[24,N,7]
  %4 = snn.lif(%3, @th2) {dt = 1.0, beta = 0.875, v0 = 0.5} : f32[24,N,7]
  %5 = nn.matmul(%4, @w3) : f32[24,N,3]
  %y = snn.decode(%5) {mode = count} : f32[N,3]
}
"""


def _mlp():
    w = {"th1": np.float32([1.0]), "w2": dyadic((6, 7)), "b2": dyadic(7, 64), "th2": np.float32([0.5] * 7),
         "w3": dyadic((7, 3))}
    return parse(MLP, w), w


def _data(n=40):
    x = (RNG.integers(0, 17, (n, 6)) / 16).astype(np.float32)   # rates 0..1 on a dyadic grid
    return Dataset({"x": x}, None, "test")


def test_snn_event_pass_lowers_both_synapses_and_keeps_every_spike(tmp_path):
    g, _ = _mlp()
    data = _data()
    want = run(g, {"x": data.feeds["x"]})["y"]
    stats = run_pipeline(g, "snn-event{max_density=1.0}", PassContext(dataset=data))[-1].stats
    text = print_graph(g)
    assert stats == {"event": 2, "dense": 0}
    assert text.count("snn.event_linear(") == 2 and "nn.matmul" not in text and text.count("snn.lif(") == 1
    # the density recorded on the first layer is the first LIF layer's rate, from the plain-Python reference
    x = data.feeds["x"].astype(np.float64)
    spikes = np.array(lif_reference(np.broadcast_to(x.reshape(-1), (24, x.size)).tolist(), [1.0] * x.size,
                                    1.0, True, 0, 0.5))
    first = next(op for op in g.ops if op.kind == "snn.event_linear")
    assert first.attrs.density == pytest.approx(spikes.mean(), abs=1e-4)
    np.testing.assert_array_equal(run(g, {"x": data.feeds["x"]})["y"], want)
    np.testing.assert_array_equal(_module(tmp_path, g, "ev_mlp").run({"x": data.feeds["x"]})["y"], want)
    assert want.sum() > 0


def test_layers_above_max_density_stay_dense():
    g, _ = _mlp()
    stats = run_pipeline(g, "snn-event{max_density=0.0,max_density_large=0.0}", PassContext(dataset=_data()))[-1].stats
    assert stats == {"event": 0, "dense": 2} and "snn.event_linear" not in print_graph(g)


def test_a_dense_graph_is_left_alone():
    g = parse("""graph @g(%x: f32[N,6]) -> (%y: f32[N,7]) {
  weight @w2 : f32[6,7]
  %y = nn.matmul(%x, @w2) : f32[N,7]
}
""", {"w2": dyadic((6, 7))})
    before = print_graph(g)
    run_pipeline(g, "snn-event", PassContext(dataset=None))
    assert print_graph(g) == before
