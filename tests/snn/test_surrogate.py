"""The torch lowering of snn.lif against back-propagation through time written here by hand, and
spiking fine-tuning end to end (the trained graph runs in the interpreter as it ran in torch)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mpc.backends import torch_backend as tb
from mpc.backends.torch_snn import surrogate

from mpc.data import Dataset
from mpc.ir import parse, run
from mpc.passmanager import PassContext, run_pipeline
from mpc.train.spiking import finetune_snn

from .test_lower_lif import MLP, _weights

RNG = np.random.default_rng(21)


def surrogate_grad(name, k, x):
    """The two surrogates from their published formulas."""
    if name == "arctan":
        return (k / 2) / (1 + (math.pi * k * x / 2) ** 2)
    return 1 / (1 + k * abs(x)) ** 2


def bptt_reference(x, theta, beta, c, name, k):
    """dL/dx and dL/dθ for L = Σ_t c_t·s_t of one soft-reset LIF unit, by hand: v_t = β·(v_{t−1} − θ·s_{t−1}) + x_t,
    s_t = H(v_t − θ) with H' replaced by the surrogate."""
    steps = len(x)
    v, s, u = np.zeros(steps), np.zeros(steps), 0.0
    for t in range(steps):
        v[t] = beta * u + x[t]
        s[t] = float(v[t] >= theta)
        u = v[t] - theta * s[t]
    gv, gx, gth = 0.0, np.zeros(steps), 0.0
    dv_next = 0.0   # dL/dv_{t+1}
    for t in reversed(range(steps)):
        sg = surrogate_grad(name, k, v[t] - theta)
        gs = c[t] + dv_next * (-beta * theta)          # s_t reaches L directly and through the reset of v_{t+1}
        gv = gs * sg + dv_next * beta
        gx[t] = gv
        gth += gs * -sg + dv_next * (-beta * s[t])     # θ in H(v − θ) and in the reset −θ·s_t
        dv_next = gv
    return gx, gth


@pytest.mark.parametrize("name, k", [("fast-sigmoid", 5.0), ("arctan", 2.0)])
def test_lif_surrogate_gradient_matches_hand_written_bptt(name, k):
    steps = 12
    x = RNG.random((steps, 1, 4)) * 0.9
    src = (f"graph @g(%x: f64[{steps},1,4]) -> (%y: f64[{steps},1,4]) {{\n  weight @th : f64[1]\n"
           f"  %y = snn.lif(%x, @th) {{dt = 1.0, beta = 0.8}} : f64[{steps},1,4]\n}}\n")
    g = parse(src, {"th": np.array([0.7])})
    module = tb.lower(g)
    xt = torch.from_numpy(x).requires_grad_()
    c = RNG.standard_normal((steps, 1, 4))
    with surrogate(name, k):
        y = module({"x": xt})["y"]
    np.testing.assert_array_equal(y.detach().numpy(), run(g, {"x": x})["y"])   # same spikes as the interpreter
    (y * torch.from_numpy(c)).sum().backward()
    gth = 0.0
    for j in range(4):
        gx, gt = bptt_reference(x[:, 0, j], 0.7, 0.8, c[:, 0, j], name, k)
        np.testing.assert_allclose(xt.grad[:, 0, j].numpy(), gx, rtol=1e-10, atol=1e-12)
        gth += gt
    theta_grad = next(p.grad for p in module.parameters() if p.shape == (1,))
    assert float(theta_grad[0]) == pytest.approx(gth, rel=1e-10)


def test_finetune_trains_weights_and_thresholds_and_writes_them_back():
    w = _weights()
    x = RNG.random((200, 6))
    labels = (x[:, :3].sum(1) > x[:, 3:].sum(1)).astype(np.int64) + (x[:, 0] > 0.8)
    g = parse(MLP, w)
    run_pipeline(g, "lower-lif{timesteps=8},dce", PassContext(dataset=Dataset({"x": x}, None, "x")))
    before = run(g, {"x": x})["y"]
    res = finetune_snn(g, Dataset({"x": x}, labels, "x"), epochs=4, lr=0.02, batch=50, seed=0, quiet=True,
                       slope=5.0)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    names = g.used_weights()
    assert any(n.endswith(".theta.ft") for n in names) and any(n.endswith(".ft") and "w" in n for n in names)
    after = run(g, {"x": x})["y"]
    acc = [(o.argmax(1) == labels).mean() for o in (before, after)]
    assert acc[1] > acc[0]
    module = tb.lower(g)
    with torch.no_grad():
        np.testing.assert_allclose(module({"x": torch.from_numpy(x)})["y"].numpy(), after, rtol=1e-9, atol=1e-9)
