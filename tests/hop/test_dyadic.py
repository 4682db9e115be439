"""Dual propagation and equilibrium propagation gradients against torch autograd and a hand computation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mpc.hop.dyadic import HopNet, dualprop_grads, dualprop_states, ep_grads


def _net(sizes, d, lam=0.5, acts=None, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    theta0 = rng.normal(0, scale, (sizes[0], d))
    thetas = tuple(rng.normal(0, scale, (sizes[k + 1], sizes[k])) for k in range(len(sizes) - 1))
    biases = tuple(rng.normal(0, 0.1, n) for n in sizes)
    acts = acts or tuple(["relu"] * (len(sizes) - 1) + ["identity"])
    return HopNet(theta0, thetas, biases, acts, lam)


def _torch_ff_grads(net, x, y):
    """Autograd gradients of mean_n 1/2 |a_L - y|^2 for the feedforward net written from its definition."""
    act = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "identity": lambda u: u}
    ps = [torch.tensor(p, requires_grad=True) for p in net.params()]
    n = len(net.thetas)
    h = act[net.acts[0]](torch.tensor(x) @ ps[0].T + ps[1 + n])
    for k in range(n):
        h = act[net.acts[k + 1]](h @ ps[1 + k].T + ps[2 + n + k])
    loss = 0.5 * ((h - torch.tensor(y)) ** 2).sum(1).mean()
    loss.backward()
    return [p.grad.numpy() for p in ps]


@pytest.mark.parametrize("acts", [("relu", "relu", "identity"), ("tanh", "sigmoid", "identity")])
@pytest.mark.parametrize("extra", [0, 1])
def test_dualprop_equals_backprop_in_the_small_beta_limit(acts, extra):
    net = _net((5, 4, 3), 6, acts=acts)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(7, 6)), rng.normal(size=(7, 3))
    want = _torch_ff_grads(net, x, y)
    got = dualprop_grads(net, x, y, beta=1e-5, extra=extra)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-6)
    rough = dualprop_grads(net, x, y, beta=1.0, extra=extra)   # a finite beta is only an estimate
    assert max(np.abs(g - w).max() for g, w in zip(rough, want)) > 1e-4


def test_dualprop_by_hand_on_a_two_layer_net():
    # x = [1, 2]; layer 0: relu(theta0 x + b0) with theta0 = [[1, -1], [0.5, 0.5]], b0 = [0, 0]
    #   u0 = [1 - 2, 0.5 + 1] = [-1, 1.5] -> s0 = [0, 1.5]
    # layer 1 (output): theta_1 = [[2, 1]], b1 = [0.5]: a = 0 + 1.5 + 0.5 = 2; target y = 1, beta = 1
    #   s+_1 = (2a + beta y)/(2 + beta) = 5/3, s-_1 = (2a - beta y)/(2 - beta) = 3, diff = -4/3
    # top-down, layer 0: d = theta_1^T diff = [-8/3, -4/3]
    #   s+_0 = relu(u0 + d/2) = relu([-7/3, 5/6]) = [0, 5/6]; s-_0 = relu(u0 - d/2) = relu([1/3, 13/6])
    net = HopNet(np.array([[1.0, -1.0], [0.5, 0.5]]), (np.array([[2.0, 1.0]]),), (np.zeros(2), np.array([0.5])),
                 ("relu", "identity"))
    x, y = np.array([[1.0, 2.0]]), np.array([[1.0]])
    sp, sm = dualprop_states(net, x, y, beta=1.0)
    np.testing.assert_allclose(sp[1], [[5 / 3]])
    np.testing.assert_allclose(sm[1], [[3.0]])
    np.testing.assert_allclose(sp[0], [[0.0, 5 / 6]])
    np.testing.assert_allclose(sm[0], [[1 / 3, 13 / 6]])
    g = dualprop_grads(net, x, y, beta=1.0)
    # dW_1 = -(s+_1 - s-_1) m_0^T / beta with m_0 = (s+_0 + s-_0)/2 = [1/6, 3/2]
    np.testing.assert_allclose(g[1], [[4 / 3 * 1 / 6, 4 / 3 * 3 / 2]])
    # dtheta0 = -(s+_0 - s-_0) x^T = -[-1/3, -4/3]^T [1, 2]; db1 = -diff = 4/3
    np.testing.assert_allclose(g[0], [[1 / 3, 2 / 3], [4 / 3, 8 / 3]])
    np.testing.assert_allclose(g[3], [4 / 3])


def _torch_symmetric_grads(net, x, y, sweeps=300):
    """Autograd through many Gauss-Seidel sweeps of s_k = f(theta_k-1 s_k-1 + theta_k^T s_k+1 + c_k) to the
    free equilibrium of the symmetric net, then mean 1/2 |s_L - y|^2 (the implicit gradient, unrolled)."""
    act = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "identity": lambda u: u}
    ps = [torch.tensor(p, requires_grad=True) for p in net.params()]
    n, xt = len(net.thetas), torch.tensor(x)
    s = [torch.zeros(x.shape[0], b.shape[0], dtype=torch.float64) for b in net.biases]
    for _ in range(sweeps):
        for k in range(n + 1):
            u = ps[1 + n + k] + (xt @ ps[0].T if k == 0 else s[k - 1] @ ps[k].T)
            if k < n:
                u = u + s[k + 1] @ ps[1 + k]
            s[k] = act[net.acts[k]](u)
    loss = 0.5 * ((s[-1] - torch.tensor(y)) ** 2).sum(1).mean()
    loss.backward()
    return [p.grad.numpy() for p in ps]


def test_ep_matches_autograd_through_the_symmetric_relaxation():
    net = _net((4, 3, 2), 5, lam=1.0, acts=("tanh", "sigmoid", "identity"), scale=0.3)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 5)), rng.normal(size=(6, 2))
    want = _torch_symmetric_grads(net, x, y)
    got = ep_grads(net, x, y, beta=1e-3, free_iter=300, nudge_iter=300)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-3, atol=1e-6)


def test_dualprop_at_lambda_one_matches_the_symmetric_autograd_gradient():
    # for symmetric W, the dyadic objective reduces to EP's: the same gradient in the small-beta limit
    net = _net((4, 3, 2), 5, lam=1.0, acts=("tanh", "sigmoid", "identity"), scale=0.3)
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 5)), rng.normal(size=(6, 2))
    want = _torch_symmetric_grads(net, x, y)
    got = dualprop_grads(net, x, y, beta=1e-4, extra=60)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=5e-3, atol=1e-5)
