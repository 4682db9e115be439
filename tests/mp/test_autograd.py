"""Exact MP derivatives (derivatives of the MP threshold α): mp_dot_fwd/mp_dot_bwd and the torch MPDotFunction / MPLinear.

The independent reference is plain torch autograd through an explicit p, q, torch.sort and cumsum:
α = max_k (S_k − γ)/k, whose gradient is 1/k* on the k* largest entries of p and −1/k* for γ.
"""

import numpy as np
import pytest
import torch

from mpc.mp import mp_dot_bwd, mp_dot_fwd
from mpc.mp.autograd import MPDotFunction, MPLinear, mp_dot_torch


def torch_reference(x, w, gamma):
    """y_MP by materialising p and q of shape (N, H, 2D) and sorting them: differentiable by autograd."""
    u = w[None, :, :] + x[:, None, :]
    v = w[None, :, :] - x[:, None, :]
    d = x.shape[1]
    ks = torch.arange(1, 2 * d + 1, dtype=x.dtype)

    def threshold(z):
        s = torch.sort(torch.cat([z, -z], dim=-1), dim=-1, descending=True).values
        return ((torch.cumsum(s, dim=-1) - gamma) / ks).max(dim=-1).values

    return gamma * d / 2 * (threshold(u) - threshold(v))


def random_problem(seed, n=3, h=4, d=5):
    """Float64 tensors (x, w, gamma) that require grad; continuous values keep clear of kinks."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=torch.float64).requires_grad_()
    w = (torch.rand(h, d, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_()
    gamma = torch.tensor(0.4 + torch.rand(1, generator=g).item(), dtype=torch.float64, requires_grad=True)
    return x, w, gamma


@pytest.mark.parametrize("seed", range(4))
def test_gradcheck(seed):
    x, w, gamma = random_problem(seed)
    assert torch.autograd.gradcheck(MPDotFunction.apply, (x, w, gamma), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_fused_grads_match_autograd_through_sort(seed):
    x, w, gamma = random_problem(seed, n=4, h=3, d=6)
    grad_y = torch.randn(4, 3, generator=torch.Generator().manual_seed(seed + 10), dtype=torch.float64)
    y_ref = torch_reference(x, w, gamma)
    gx_ref, gw_ref, gg_ref = torch.autograd.grad((y_ref * grad_y).sum(), (x, w, gamma))

    xs, ws, g = x.detach().numpy(), w.detach().numpy(), float(gamma.detach())
    y, alpha, beta, k_alpha, k_beta = mp_dot_fwd(xs, ws, g)
    gx, gw, gg = mp_dot_bwd(grad_y.numpy(), xs, ws, g, alpha, beta, k_alpha, k_beta)
    np.testing.assert_allclose(y, y_ref.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gx, gx_ref.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gw, gw_ref.numpy(), rtol=1e-9, atol=1e-9)
    assert gg == pytest.approx(gg_ref.item(), rel=1e-9, abs=1e-9)


def test_float32_grads_stay_float32():
    x = torch.rand(5, 8, requires_grad=True)
    w = (torch.rand(3, 8) - 0.5).requires_grad_()
    gamma = torch.tensor(1.0, requires_grad=True)
    y = mp_dot_torch(x, w, gamma)
    y.sum().backward()
    assert y.dtype == x.grad.dtype == w.grad.dtype == gamma.grad.dtype == torch.float32
    y_ref = torch_reference(x.double(), w.double(), gamma.double())
    np.testing.assert_allclose(y.detach().numpy(), y_ref.detach().numpy(), rtol=1e-4, atol=1e-3)


def test_only_needed_grads_are_computed():
    x, w, gamma = random_problem(7)
    y = MPDotFunction.apply(x.detach(), w, gamma.detach())
    y.sum().backward()
    assert w.grad is not None and x.grad is None and gamma.grad is None


def test_saved_state_is_batch_by_outputs():
    """Training memory beyond inputs and weights is O(B·H): α, β and two counts, nothing B × 2D × H."""
    x, w, gamma = random_problem(8, n=6, h=4, d=50)
    y = MPDotFunction.apply(x, w, gamma)
    extra = [t for t in y.grad_fn.saved_tensors if t.shape not in (x.shape, w.shape)]
    assert len(extra) == 4 and all(t.shape == (6, 4) for t in extra)


def test_mp_linear_forward_backward():
    torch.manual_seed(0)
    layer = MPLinear(12, 5, gamma=2.0, gain=True)
    x = torch.rand(2, 3, 12)
    y = layer(x)
    assert y.shape == (2, 3, 5)
    plain = mp_dot_torch(x.reshape(6, 12), layer.weight.detach(), layer.gamma.detach())
    torch.testing.assert_close(y.reshape(6, 5).detach(), plain * layer.gain.detach() + layer.bias.detach())
    y.square().sum().backward()
    for p in (layer.weight, layer.log_gamma, layer.gain, layer.bias):
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert float(layer.gamma.detach()) == pytest.approx(2.0)


def test_float_gamma_is_accepted():
    x, w, gamma = random_problem(9)
    y_float = MPDotFunction.apply(x, w, float(gamma.detach()))
    y_tensor = MPDotFunction.apply(x, w, gamma)
    torch.testing.assert_close(y_float, y_tensor)
    y_float.sum().backward()
    assert x.grad is not None and w.grad is not None
