"""FPTT: one update on a 2-parameter toy equals the update computed by hand from the FPTT equations, and the
graph is cut between steps (the state that enters step t+1 has no autograd history)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from mpc.train.fptt import FPTT, fptt_sequence


class Toy(torch.nn.Module):
    """h_t = a·x_t + b·h_{t−1}; output h_t."""

    def __init__(self, a: float, b: float):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(a, dtype=torch.float64))
        self.b = torch.nn.Parameter(torch.tensor(b, dtype=torch.float64))
        self.seen: list[bool] = []

    def init_state(self, n):
        return (torch.zeros(n, dtype=torch.float64),)

    def step(self, x_t, state):
        self.seen.append(state[0].requires_grad)
        h = self.a * x_t + self.b * state[0]
        return h, (h,)


def _sq(out, target, t, steps):
    return 0.5 * ((out - target[:, t]) ** 2).sum()


def test_two_fptt_steps_equal_the_hand_computed_update():
    a, b, alpha, lr = 0.7, -0.4, 0.5, 0.1
    x0, x1, y0, y1 = 1.5, -2.0, 0.3, 1.1
    model = Toy(a, b)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    fptt = FPTT(model.parameters(), alpha)
    fptt_sequence(model, fptt, opt, torch.tensor([[x0, x1]], dtype=torch.float64),
                  torch.tensor([[y0, y1]], dtype=torch.float64), _sq)
    # step 0: W̄ = W, g_{-1} = 0: a plain gradient step, then W̄ = (W̄ + W1)/2 − g0/(2α)
    h0 = a * x0
    g0 = ((h0 - y0) * x0, 0.0)
    w1 = (a - lr * g0[0], b - lr * g0[1])
    avg1 = tuple(0.5 * (w + v) - g / (2 * alpha) for w, v, g in zip((a, b), w1, g0))
    # step 1: h0 is a constant (graph cut); gradient of ℓ1 plus α(W − W̄) − g0/2
    h1 = w1[0] * x1 + w1[1] * h0
    g1 = ((h1 - y1) * x1, (h1 - y1) * h0)
    full = tuple(g + alpha * (w - v) - 0.5 * gp for g, w, v, gp in zip(g1, w1, avg1, g0))
    w2 = tuple(w - lr * f for w, f in zip(w1, full))
    avg2 = tuple(0.5 * (v + w) - g / (2 * alpha) for v, w, g in zip(avg1, w2, g1))
    assert float(model.a) == pytest.approx(w2[0], rel=1e-12)
    assert float(model.b) == pytest.approx(w2[1], rel=1e-12)
    assert [float(v) for v in fptt.avg] == pytest.approx(list(avg2), rel=1e-12)
    assert model.seen == [False, False]     # the state entering each step carries no graph
