"""LinBreg and AdaBreg against steps computed by hand on a 3-parameter problem,
L(θ) = ½‖θ − c‖² (gradient θ − c), and torch autograd providing the gradients."""
import math

import pytest
import torch

from mpc.optim import AdaBreg, LinBreg, active_ratio, shrink, sparse_init_

C = torch.tensor([1.0, 0.1, -1.0], dtype=torch.float64)
THETA0 = [0.5, 0.0, -0.2]


def _steps(opt_cls, n, **kw):
    theta = torch.tensor(THETA0, dtype=torch.float64, requires_grad=True)
    opt = opt_cls([theta], **kw)
    out = []
    for _ in range(n):
        opt.zero_grad()
        loss = 0.5 * ((theta - C) ** 2).sum()
        loss.backward()
        opt.step()
        out.append(theta.detach().clone().tolist())
    return out


def test_linbreg_matches_hand_computed_steps():
    # v0 = θ0 + λ·sign(θ0) = [0.6, 0, -0.3]; g0 = θ0 - c = [-0.5, -0.1, 0.8]
    # v1 = v0 - 0.5·g0 = [0.85, 0.05, -0.7]      θ1 = shrink(v1, 0.1) = [0.75, 0, -0.6]
    # g1 = [-0.25, -0.1, 0.4]; v2 = [0.975, 0.1, -0.9]      θ2 = [0.875, 0 (|v| = λ), -0.8]
    # g2 = [-0.125, -0.1, 0.2]; v3 = [1.0375, 0.15, -1.0]   θ3 = [0.9375, 0.05, -0.9]: the 2nd weight enters
    steps = _steps(LinBreg, 3, lr=0.5, lam=0.1)
    expected = [[0.75, 0.0, -0.6], [0.875, 0.0, -0.8], [0.9375, 0.05, -0.9]]
    for got, want in zip(steps, expected):
        assert got == pytest.approx(want, abs=1e-12)


def test_adabreg_matches_hand_computed_steps():
    lr, lam, b1, b2, eps = 0.15, 0.1, 0.9, 0.999, 1e-8
    # step 1: m̂ = g, ŝ = g², so v1 = v0 - lr·g/(|g| + eps)
    g0 = [-0.5, -0.1, 0.8]
    v = [0.6, 0.0, -0.3]
    v = [vi - lr * gi / (abs(gi) + eps) for vi, gi in zip(v, g0)]
    th1 = [math.copysign(max(abs(vi) - lam, 0.0), vi) for vi in v]
    assert th1 == pytest.approx([0.65, 0.05, -0.35], abs=1e-7)
    # step 2 from the definition of the bias-corrected moments
    g1 = [t - c for t, c in zip(th1, C.tolist())]
    m = [(1 - b1) * b1 * a + (1 - b1) * b for a, b in zip(g0, g1)]
    s = [(1 - b2) * b2 * a * a + (1 - b2) * b * b for a, b in zip(g0, g1)]
    v = [vi - lr * (mi / (1 - b1 ** 2)) / (math.sqrt(si / (1 - b2 ** 2)) + eps) for vi, mi, si in zip(v, m, s)]
    th2 = [math.copysign(max(abs(vi) - lam, 0.0), vi) for vi in v]
    steps = _steps(AdaBreg, 2, lr=lr, lam=lam, betas=(b1, b2), eps=eps)
    assert steps[0] == pytest.approx(th1, abs=1e-12)
    assert steps[1] == pytest.approx(th2, abs=1e-12)


def test_lambda_zero_is_plain_gradient_descent():
    steps = _steps(LinBreg, 1, lr=0.5, lam=0.0)
    assert steps[0] == pytest.approx([0.75, 0.05, -0.6], abs=1e-12)


def test_group_shrink_zeroes_whole_rows_and_scales_the_rest():
    v = torch.tensor([[3.0, 4.0], [0.3, 0.4]], dtype=torch.float64)
    out = shrink(v, 1.0, "rows")
    assert out[0].tolist() == pytest.approx((v[0] * (1 - math.sqrt(2) / 5)).tolist())
    assert out[1].tolist() == [0.0, 0.0]


def test_linbreg_group_rows_keeps_a_dead_row_dead_until_its_gradient_norm_crosses():
    theta = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[1.0, 1.0], [0.01, 0.01]], dtype=torch.float64)
    opt = LinBreg([theta], lr=0.1, lam=0.05, group="rows")
    for _ in range(3):
        opt.zero_grad()
        (0.5 * ((theta - target) ** 2).sum()).backward()
        opt.step()
    assert torch.all(theta[0] > 0) and torch.all(theta[1] == 0)


def test_sparse_init_and_active_ratio():
    p = torch.ones(1000, dtype=torch.float64)
    sparse_init_(p, 0.1, torch.Generator().manual_seed(0))
    assert 0.05 < active_ratio([p]) < 0.15
    assert active_ratio([p]) == float((p != 0).sum()) / 1000


def test_bad_hyperparameters_are_rejected():
    with pytest.raises(ValueError, match="lam"):
        LinBreg([torch.zeros(1, requires_grad=True)], lam=-1.0)
    with pytest.raises(ValueError, match="group"):
        AdaBreg([torch.zeros(1, requires_grad=True)], group="cols")
