"""Dyadic learning in NumPy, without autograd: dual propagation (any lambda) and equilibrium propagation.

The network is a layered Hopfield net (`HopNet`): feedforward weights theta_k (layer k+1 <- k), the
input coupling theta0 (layer 0 <- x), biases, per-layer activations, and lambda, with connectivity
W_lam = theta - theta^T + 2 lam theta^T (mpc.hop.analysis). The last layer is a linear output trained
on the squared loss l(s_L) = 1/2 |s_L - y|^2.

Dual propagation (R. Hoier, D. Staudt and C. Zach, "Dual propagation: accelerating contrastive Hebbian
learning with dyadic neurons", ICML 2023; for general W, Hoier et al., "Dyadic learning in recurrent and
feedforward models", 2024). Each unit keeps two states s+, s-; the mean m = (s+ + s-)/2 propagates
through W and the difference through W^T. With u_k = b_k + theta0 x [k = 0] + sum_j W_kj m_j and
d_k = sum_j W_jk^T (s+_j - s-_j), a hidden layer takes s+-_k = f(u_k +- d_k / 2); the output, nudged with
strength beta, takes s+_L = (2(u_L + d_L/2) + beta y)/(2 + beta) and s-_L = (2(u_L - d_L/2) - beta y)/(2 - beta).
These are the stationarity conditions of the saddle objective 1/2 l(s+) + 1/2 l(s-) +
(1/beta) sum_k (E_k(s+_k) - E_k(s-_k)), whose gradient in W is -(s+ - s-) m^T / beta: no derivative of f
is ever taken. Schedule: relax freely (s+ = s-), then a top-down sweep, then `extra` bottom-up/top-down
pairs. At lam = 1/2 and beta -> 0 the update is the backprop gradient of the squared loss.

Equilibrium propagation (B. Scellier and Y. Bengio 2017; the centered variant of A. Laborieux et al.,
"Scaling equilibrium propagation to deep ConvNets", 2021) for lam = 1 (W symmetric): a free phase, two
nudged phases with +beta and -beta started from it, and the gradient
dL/dtheta = (dE/dtheta(s^beta) - dE/dtheta(s^-beta)) / (2 beta) with dE/dtheta_k = -s_k+1 s_k^T. Every
phase runs layer-ordered Gauss-Seidel sweeps; for symmetric W each layer update exactly minimises the
energy over that layer, so the sweeps descend the energy.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mpc.hop import analysis
from mpc.hop import kernels as HK


@dataclass(frozen=True)
class HopNet:
    """A layered Hopfield net: theta0 [n0, D], thetas[k] [n_k+1, n_k], biases[k] [n_k], acts, lam."""

    theta0: np.ndarray
    thetas: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    acts: tuple[str, ...]
    lam: float = 0.5

    @property
    def sizes(self) -> tuple[int, ...]:
        """Units per layer."""
        return tuple(b.shape[0] for b in self.biases)

    def blocks(self) -> tuple[list[tuple[int, int]], list[np.ndarray]]:
        """(pairs, blocks) of W_lam (mpc.hop.analysis.lambda_blocks)."""
        return analysis.lambda_blocks(self.thetas, self.lam)

    def params(self) -> list[np.ndarray]:
        """The trainable arrays in a fixed order: theta0, thetas, biases."""
        return [self.theta0, *self.thetas, *self.biases]

    def with_params(self, params: list[np.ndarray]) -> HopNet:
        """A copy with new trainable arrays (the order of params())."""
        n = len(self.thetas)
        return replace(self, theta0=params[0], thetas=tuple(params[1:1 + n]), biases=tuple(params[1 + n:]))


def relax(net: HopNet, x: np.ndarray, max_iter: int = 100, tol: float = 1e-6) -> list[np.ndarray]:
    """The free equilibrium by Gauss-Seidel sweeps, as per-layer states."""
    pairs, blocks = net.blocks()
    s, _, _ = HK.hop_relax_stats(x, net.theta0, np.concatenate(net.biases), blocks, net.sizes, net.acts, pairs,
                                 False, tol, max_iter)
    return HK.hop_split(s, net.sizes)


def predict(net: HopNet, x: np.ndarray, max_iter: int = 100) -> np.ndarray:
    """The output layer's free equilibrium [N, n_L]."""
    return relax(net, x, max_iter)[-1]


def _drives(net: HopNet, x: np.ndarray) -> list[np.ndarray]:
    return HK.hop_constants(x, net.theta0, np.concatenate(net.biases), net.sizes)


def _drive(k, sp, sm, c, pairs, blocks):
    """Layer k's input from the mean states below (u) and the state differences above (d)."""
    u, d = c[k].copy(), np.zeros_like(c[k])
    for (dst, src), b in zip(pairs, blocks):
        if dst == k:
            u += ((sp[src] + sm[src]) / 2) @ b.T
        if src == k:
            d += (sp[dst] - sm[dst]) @ b
    return u, d


def _dp_update(k, sp, sm, c, pairs, blocks, acts, y, beta):
    """New (s+_k, s-_k) of dual propagation from the other layers' current states."""
    u, d = _drive(k, sp, sm, c, pairs, blocks)
    if k < len(sp) - 1:
        return HK.hop_act(acts[k], u + d / 2), HK.hop_act(acts[k], u - d / 2)
    return (2 * (u + d / 2) + beta * y) / (2 + beta), (2 * (u - d / 2) - beta * y) / (2 - beta)


def dualprop_states(net: HopNet, x, y, beta: float, extra: int = 0, free_iter: int = 100):
    """(s+, s-) per layer after the free relaxation, a top-down sweep and `extra` up/down pairs."""
    return _dualprop(net, x, y, beta, extra, free_iter)[:2]


def damping_for(net: HopNet) -> float:
    """A forward-backward step size 1/(1 + |W|_2)^2 that makes the damped relaxation converge whenever its
    operator is strongly monotone (skew-symmetric W: the free and the dyadic systems both are)."""
    pairs, blocks = net.blocks()
    return float(1.0 / (1.0 + np.linalg.norm(analysis.assemble(net.sizes, pairs, blocks), 2)) ** 2)


def _dp_damped(k, sp, sm, c, pairs, blocks, acts, y, beta, g):
    """Damped (forward-backward) update of layer k's (s+, s-) pair, for nets where plain sweeps diverge."""
    u, d = _drive(k, sp, sm, c, pairs, blocks)
    if k < len(sp) - 1:
        return (HK.hop_act(acts[k], (1 - g) * sp[k] + g * (u + d / 2)),
                HK.hop_act(acts[k], (1 - g) * sm[k] + g * (u - d / 2)))
    # output: a gradient step on s+ - (u + d/2) + beta/2 (s+ - y) = 0 and s- - (u - d/2) - beta/2 (s- - y) = 0
    return (sp[k] - g * (sp[k] - u - d / 2 + beta / 2 * (sp[k] - y)),
            sm[k] - g * (sm[k] - u + d / 2 - beta / 2 * (sm[k] - y)))


def _dualprop_damped(net: HopNet, x, y, beta: float, iters: int, tol: float = 1e-6):
    """(s+, s-, free output) by damped Jacobi iterations: the free phase, then the nudged dyadic system."""
    pairs, blocks = net.blocks()
    g = damping_for(net)
    s, _, _ = HK.hop_relax_stats(x, net.theta0, np.concatenate(net.biases), blocks, net.sizes, net.acts, pairs,
                                 True, tol, iters, g)
    c = _drives(net, x)
    free = HK.hop_split(s, net.sizes)
    sp, sm = list(free), list(free)
    for _ in range(iters):
        new = [_dp_damped(k, sp, sm, c, pairs, blocks, net.acts, y, beta, g) for k in range(len(sp))]
        change = HK.hop_maxabs([a - b for (a, _), b in zip(new, sp)] + [a - b for (_, a), b in zip(new, sm)])
        sp, sm = [a for a, _ in new], [b for _, b in new]
        if change <= tol:
            break
    return sp, sm, free[-1]


def _dualprop(net: HopNet, x, y, beta: float, extra: int = 0, free_iter: int = 100):
    if net.lam != 0.5 and extra < 0:   # extra < 0 selects the damped joint iteration (see dualprop_grads)
        return _dualprop_damped(net, x, y, beta, free_iter)
    pairs, blocks = net.blocks()
    c = _drives(net, x)
    free = relax(net, x, 1 if net.lam == 0.5 else free_iter)   # feedforward: one sweep is exact
    sp, sm = list(free), list(free)
    order = list(range(len(sp)))
    for sweep in [order[::-1]] + [order, order[::-1]] * extra:
        for k in sweep:
            sp[k], sm[k] = _dp_update(k, sp, sm, c, pairs, blocks, net.acts, y, beta)
    return sp, sm, free[-1]


def _theta_grads(net: HopNet, gw: dict[tuple[int, int], np.ndarray]) -> list[np.ndarray]:
    """Gradients of the thetas from those of W_lam's blocks: W_k+1,k = theta_k, W_k,k+1 = (2 lam - 1) theta_k^T."""
    up = 2 * net.lam - 1
    out = []
    for k in range(len(net.thetas)):
        g = gw[(k + 1, k)]
        if up != 0:
            g = g + up * gw[(k, k + 1)].T
        out.append(g)
    return out


def dualprop_grads(net: HopNet, x, y, beta: float = 0.5, extra: int = 0, keep_free: bool = False,
                   free_iter: int = 100):
    """Dual-propagation gradient estimates of the mean squared loss, in the order of net.params() (and the
    free output when keep_free). extra >= 0: Gauss-Seidel sweeps (free relaxation, a top-down sweep, then
    `extra` bottom-up/top-down pairs); extra = -1: damped Jacobi iterations of the whole dyadic system
    (up to free_iter), which converge for skew-symmetric W where the sweeps diverge."""
    sp, sm, free = _dualprop(net, x, y, beta, extra, free_iter)
    n = x.shape[0]
    diff = [(a - b) / (beta * n) for a, b in zip(sp, sm)]
    mean = [(a + b) / 2 for a, b in zip(sp, sm)]
    pairs, _ = net.blocks()
    gw = {(k, j): -diff[k].T @ mean[j] for k, j in pairs}
    grads = [-diff[0].T @ x, *_theta_grads(net, gw), *[-d.sum(0) for d in diff]]
    return (grads, free) if keep_free else grads


def _ep_phase(net: HopNet, start, c, y, beta: float, iters: int, tol: float = 1e-6):
    """Gauss-Seidel sweeps of the nudged energy E + beta l from `start` (the output's own update is exact)."""
    pairs, blocks = net.blocks()
    s = list(start)
    last = len(s) - 1
    for _ in range(iters):
        change = 0.0
        for k in range(len(s)):
            u = HK.hop_drive(k, s, blocks, pairs, c)
            new = HK.hop_act(net.acts[k], u) if k < last else (u + beta * y) / (1 + beta)
            change = max(change, float(np.max(np.abs(new - s[k]), initial=0.0)))
            s[k] = new
        if change <= tol:
            break
    return s


def ep_grads(net: HopNet, x, y, beta: float = 0.5, free_iter: int = 40, nudge_iter: int = 20,
             keep_free: bool = False):
    """Centered equilibrium-propagation gradient estimates of the mean squared loss (lam = 1 nets), and
    the free output when keep_free."""
    c = _drives(net, x)
    free = _ep_phase(net, [np.zeros_like(ck) for ck in c], c, y, 0.0, free_iter)
    pos = _ep_phase(net, free, c, y, beta, nudge_iter)
    neg = _ep_phase(net, free, c, y, -beta, nudge_iter)
    scale = 1.0 / (2 * beta * x.shape[0])
    # dE/dtheta_k = -s_k+1 s_k^T, dE/db = -s, dE/dtheta0 = -s_0 x^T; dL/dp = (dE(pos) - dE(neg)) / (2 beta)
    g_thetas = [-(pos[k + 1].T @ pos[k] - neg[k + 1].T @ neg[k]) * scale for k in range(len(net.thetas))]
    g_b = [-(p - q).sum(0) * scale for p, q in zip(pos, neg)]
    grads = [-(pos[0] - neg[0]).T @ x * scale, *g_thetas, *g_b]
    return (grads, free[-1]) if keep_free else grads
