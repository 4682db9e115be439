"""snn.lif with a recurrent weight: interpreter vs a plain-Python reference written here, model.py vs the
interpreter, the torch lowering vs the interpreter (forward) and its surrogate gradient reaching w_rec."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from mpc.backends.numpy_backend import render_model
from mpc.backends.torch_backend import lower

from mpc.data import npz_bytes
from mpc.errors import VerifyError
from mpc.ir import parse, print_graph, run

TEXT = """graph @g(%x: {t}[N,3]) -> (%y: {t}[N,4]) {{
  weight @w : {t}[3,4]
  weight @th : {t}[4]
  weight @r : {t}[4,4]
  %0 = snn.encode(%x) {{timesteps = 12, dt = 1.0}} : {t}[12,N,3]
  %1 = nn.matmul(%0, @w) : {t}[12,N,4]
  %2 = snn.lif(%1, @th, @r) {{dt = 1.0, beta = {beta}, reset = {reset}, refractory = {refr}, v0 = 0.5}} : {t}[12,N,4]
  %y = snn.decode(%2) {{mode = count}} : {t}[N,4]
}}
"""


def _graph(dtype="f64", beta=0.9, reset="soft", refr=0, seed=0):
    rng = np.random.default_rng(seed)
    np_t = np.float64 if dtype == "f64" else np.float32
    w = {"w": rng.normal(0, 0.6, (3, 4)).astype(np_t), "th": rng.uniform(0.4, 1.0, 4).astype(np_t),
         "r": rng.normal(0, 0.5, (4, 4)).astype(np_t)}
    return parse(TEXT.format(t=dtype, beta=beta, reset=reset, refr=refr), w), w, rng


def _reference(cur, th, r, beta, soft, refr, v0=0.5):
    """u_t = β u_{t−1} + I_t + Σ_i s_{t−1,i} r[i, j]; spike at θ; soft or zero reset; refractory steps held."""
    steps, n, c = cur.shape
    out = np.zeros(cur.shape)
    for b in range(n):
        u, wait, prev = [v0 * th[j] for j in range(c)], [0] * c, [0.0] * c
        for t in range(steps):
            now = [0.0] * c
            for j in range(c):
                if wait[j] > 0:
                    wait[j] -= 1
                    continue
                v = beta * u[j] + cur[t, b, j] + sum(prev[i] * r[i, j] for i in range(c))
                if v >= th[j]:
                    now[j] = 1.0
                    v = v - th[j] if soft else 0.0
                    wait[j] = refr
                u[j] = v
            prev = now
            out[t, b] = now
    return out


@pytest.mark.parametrize("beta,reset,refr", [(0.9, "soft", 0), (1.0, "zero", 2)])
def test_interpreter_matches_plain_python(beta, reset, refr):
    g, w, rng = _graph("f64", beta, reset, refr)
    x = rng.uniform(0, 1, (5, 3))
    vals = run(g, {"x": x}, keep_all=True)
    cur = np.broadcast_to(x @ w["w"], (12, 5, 4))
    want = _reference(cur, w["th"], w["r"], beta, reset == "soft", refr)
    np.testing.assert_array_equal(vals["2"], want)
    assert 0 < want.mean() < 1            # the case spikes, and not everywhere
    # without the recurrent weight the spikes differ: the feedback is really applied
    assert not np.array_equal(want, _reference(cur, w["th"], 0 * w["r"], beta, reset == "soft", refr))


def test_text_round_trip_and_shape_check():
    g, w, _ = _graph()
    assert print_graph(parse(print_graph(g), w)) == print_graph(g)
    bad = dict(w, r=np.zeros((3, 3)))
    with pytest.raises(VerifyError, match="w_rec must be f64"):
        parse(TEXT.format(t="f64", beta=0.9, reset="soft", refr=0).replace("@r : f64[4,4]", "@r : f64[3,3]"), bad)


def test_model_py_matches_the_interpreter(tmp_path):
    g, _, rng = _graph("f32", 0.8, "soft", 1, seed=3)
    (tmp_path / "model.py").write_text(render_model(g, "lif"))
    (tmp_path / "weights.npz").write_bytes(npz_bytes({k: g.weights[k] for k in g.used_weights()}))
    spec = importlib.util.spec_from_file_location("snn_rec_model", tmp_path / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x = rng.random((7, 3)).astype(np.float32)
    np.testing.assert_array_equal(mod.run({"x": x})["y"], run(g, {"x": x})["y"])
    assert "snn_lif_rec(" in (tmp_path / "model.py").read_text()


def test_torch_lowering_matches_and_trains_w_rec():
    g, _, rng = _graph("f64", 0.9, "soft", 0, seed=5)
    x = rng.uniform(0, 1, (6, 3))
    model = lower(g, trainable=True)
    got = model({"x": torch.from_numpy(x)})["y"]
    np.testing.assert_array_equal(got.detach().numpy(), run(g, {"x": x})["y"])
    got.sum().backward()
    grad = model.params[model.keys["r"]].grad
    assert grad is not None and grad.shape == (4, 4) and torch.count_nonzero(grad) > 0


def test_model_py_of_a_deep_recurrent_network(tmp_path):
    """Spikes feeding a recurrent layer: the NumPy backend keeps w_rec (the event path fuses no recurrent lif)."""
    from mpc.snn.tasks import network
    g = network(5, 3, 4, 2, seed=7)
    text = render_model(g, "lif")
    (tmp_path / "model.py").write_text(text)
    (tmp_path / "weights.npz").write_bytes(npz_bytes({k: g.weights[k] for k in g.used_weights()}))
    spec = importlib.util.spec_from_file_location("snn_rec_deep", tmp_path / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x = np.random.default_rng(1).random((16, 5, 3)).astype(np.float32)
    got, want = mod.run({"x": x})["logits"], run(g, {"x": x})["logits"]
    assert text.count("snn_lif_rec(") == 3   # its embedded definition and one call per layer
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_snn_event_keeps_the_recurrent_lif():
    """The event-driven lowering may take the synapse, never a recurrent neuron (its w_rec would be lost)."""
    from mpc.ir import clone
    from mpc.passmanager import PassContext, run_pipeline
    from mpc.snn.tasks import network
    g = network(5, 3, 4, 2, seed=7)
    low = clone(g)
    run_pipeline(low, "snn-event{max_density=1.0}", PassContext(dataset=None))
    assert sum(len(op.operands) == 3 for op in low.ops if op.kind == "snn.lif") == 2
    x = np.random.default_rng(2).random((16, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(run(low, {"x": x})["logits"], run(g, {"x": x})["logits"], atol=1e-5)
