"""snn.ltc against a plain-Python, scalar-by-scalar reference of the LTC neuron written here from its
definition (float64); the torch lowering's forward equals the interpreter; model.py (NumPy backend) runs
the interpreter's values for every recurrent op kind."""
from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
from mpc.backends.numpy_backend import render_model

from ltc.torch_cases import LTC_CASES
from mpc.data import npz_bytes
from mpc.ir import parse, run

torch = pytest.importorskip("torch")


def _sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _reference(x, w_in, w_rec, b, w_tau, b_tau, w_rho, b_rho):
    """Spikes of the LTC layer, one neuron and one step at a time, from the equations:
    c = W_in x_t + W_rec s_{t-1} + b; 1/tau = sig(W_tau [c, u_{t-1}] + b_tau); rho = sig(W_rho [c, b_{t-1}] + b_rho);
    b_t = rho b_{t-1} + (1 - rho) s_{t-1}; theta = 0.1 + 1.8 b_t; u_t = u_{t-1} + (c - u_{t-1}) / tau;
    spike when u_t >= theta, then u_t = 0."""
    t_len, n, _ = x.shape
    h = w_in.shape[0]
    out = np.zeros((t_len, n, h))
    for k in range(n):
        u, ad, s = [0.0] * h, [0.0] * h, [0.0] * h
        for t in range(t_len):
            c = [sum(w_in[j][i] * x[t][k][i] for i in range(x.shape[2])) + sum(w_rec[j][i] * s[i] for i in range(h))
                 + b[j] for j in range(h)]
            new_u, new_ad, new_s = [], [], []
            for j in range(h):
                rate = _sig(sum(w_tau[j][i] * c[i] + w_tau[j][h + i] * u[i] for i in range(h)) + b_tau[j])
                rho = _sig(sum(w_rho[j][i] * c[i] + w_rho[j][h + i] * ad[i] for i in range(h)) + b_rho[j])
                a = rho * ad[j] + (1 - rho) * s[j]
                v = u[j] + (c[j] - u[j]) * rate
                fired = 1.0 if v >= 0.1 + 1.8 * a else 0.0
                new_u.append(0.0 if fired else v)
                new_ad.append(a)
                new_s.append(fired)
            u, ad, s = new_u, new_ad, new_s
            out[t, k] = s
    return out


def _weights(rng, i, h):
    return [rng.normal(0.6, 0.4, (h, i)), rng.normal(0, 0.5, (h, h)), rng.normal(0.1, 0.1, h),
            rng.normal(0, 0.5, (h, 2 * h)), rng.normal(0, 0.5, h), rng.normal(0, 0.5, (h, 2 * h)),
            rng.normal(0, 0.5, h)]


GRAPH = """graph @g(%x: f64[T,N,3]) -> (%s: f64[T,N,5]) {
  weight @win : f64[5,3]
  weight @wrec : f64[5,5]
  weight @b : f64[5]
  weight @wtau : f64[5,10]
  weight @btau : f64[5]
  weight @wrho : f64[5,10]
  weight @brho : f64[5]
  %s = snn.ltc(%x, @win, @wrec, @b, @wtau, @btau, @wrho, @brho) : f64[T,N,5]
}"""
NAMES = ["win", "wrec", "b", "wtau", "btau", "wrho", "brho"]


def test_interpreter_matches_the_plain_python_reference_step_for_step():
    rng = np.random.default_rng(3)
    ws = _weights(rng, 3, 5)
    x = rng.uniform(0, 1.5, (20, 4, 3))
    g = parse(GRAPH, dict(zip(NAMES, ws)))
    got = run(g, {"x": x})["s"]
    want = _reference(x, *ws)
    assert 0.05 < want.mean() < 0.95          # spikes and silences both occur: the test can fail
    np.testing.assert_array_equal(got, want)


def test_torch_lowering_forward_equals_the_interpreter_and_has_gradients():
    from mpc.backends.torch_backend import lower
    rng = np.random.default_rng(4)
    g = parse(GRAPH, dict(zip(NAMES, _weights(rng, 3, 5))))
    x = rng.uniform(0, 1.5, (30, 6, 3))
    module = lower(g)
    out = module({"x": torch.from_numpy(x)})["s"]
    np.testing.assert_array_equal(out.detach().numpy(), run(g, {"x": x})["s"])
    out.sum().backward()
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    assert grads and any(float(gr.abs().sum()) > 0 for gr in grads)   # the surrogate carries gradients


@pytest.mark.parametrize("case", sorted(LTC_CASES))
def test_model_py_matches_the_interpreter(tmp_path, case):
    rng = np.random.default_rng(5)
    g = parse(LTC_CASES[case].replace("{t}", "f32"),
              lambda name, ty: rng.uniform(-1, 1, ty.shape).astype(np.float32))
    (tmp_path / "model.py").write_text(render_model(g, "float"))
    (tmp_path / "weights.npz").write_bytes(npz_bytes({k: g.weights[k] for k in g.used_weights()}))
    spec = importlib.util.spec_from_file_location(f"rnn_model_{case}", tmp_path / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    feeds = {v.name: rng.uniform(-1, 1, v.type.shape).astype(np.float32) for v in g.inputs}
    got, want = mod.run(feeds), run(g, feeds)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


@pytest.mark.parametrize("text, message", [
    ("""graph @g(%x: f32[4,2,3]) -> (%y: f32[4,1,2,5], %h: f32[1,2,5]) {
  weight @w : f32[1,5,4]
  weight @r : f32[1,5,5]
  weight @b : f32[1,10]
  %y, %h = nn.rnn(%x, @w, @r, @b) {hidden_size = 5} : f32[4,1,2,5], f32[1,2,5]
}""", "<text>:5:3: 'nn.rnn': w shape [D, 1·H, I]: expected [1, 5, 3], got [1, 5, 4]"),
    (GRAPH.replace("weight @wtau : f64[5,10]", "weight @wtau : f64[5,9]"),
     "<text>:9:3: 'snn.ltc': w_tau [H, 2·H]: expected [5, 10], got [5, 9]"),
])
def test_wrong_weight_shapes_are_rejected_with_their_location(text, message):
    from mpc.errors import VerifyError
    with pytest.raises(VerifyError) as e:
        parse(text, lambda name, ty: np.zeros(ty.shape, ty.dtype.numpy))
    assert str(e.value) == message
