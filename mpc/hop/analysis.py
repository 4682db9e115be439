"""The connectivity W_lam of a layered Hopfield network and bounds on its dynamics.

A feedforward net with layer weights theta_k (layer k+1 <- layer k) is the block lower-triangular
theta over the concatenated layer states. W_lam = theta - theta^T + 2 lam theta^T puts theta below the
diagonal and (2 lam - 1) theta^T above it: lam = 1/2 is the feedforward net, 1 a symmetric Hopfield
net (equilibrium propagation's form), 0 a skew-symmetric one (R. Hoier, K. Kalinin, M. Ernoult and
C. Zach, "Dyadic learning in recurrent and feedforward models", 2024).

Lipschitz bounds (f elementwise, monotone and 1-Lipschitz: relu, identity, tanh, sigmoid, hence firmly
nonexpansive). One Jacobi step s -> f(W s + c) is ||W||_2-Lipschitz. For two equilibria s1, s2 of drives
c1, c2, firm nonexpansiveness gives |d|^2 <= <d, W d> + <d, e> <= mu |d|^2 + |d| |e| with d = s1 - s2,
e = c1 - c2 and mu the largest eigenvalue of (W + W^T)/2; so when mu < 1 the equilibrium moves at most
|e| / (1 - mu): exactly 1 for skew-symmetric W (mu = 0), whatever its norm.
"""
from __future__ import annotations

import numpy as np


def assemble(sizes, pairs, blocks) -> np.ndarray:
    """The dense W [S, S] (float64) from its blocks; block (k, j) sits at rows of layer k, columns of j."""
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    w = np.zeros((offsets[-1], offsets[-1]))
    for (k, j), b in zip(pairs, blocks):
        w[offsets[k]:offsets[k + 1], offsets[j]:offsets[j + 1]] = b
    return w


def lambda_blocks(thetas, lam: float) -> tuple[list[tuple[int, int]], list[np.ndarray]]:
    """The blocks of W_lam for feedforward weights thetas[k] (layer k+1 <- k, shape [n_k+1, n_k])."""
    pairs = [(k + 1, k) for k in range(len(thetas))]
    blocks = [np.asarray(t) for t in thetas]
    up = 2.0 * lam - 1.0
    if up != 0.0:
        pairs += [(k, k + 1) for k in range(len(thetas))]
        blocks += [(up * np.asarray(t, np.float64)).T.astype(np.asarray(t).dtype) for t in thetas]
    return pairs, blocks


def lipschitz(w: np.ndarray) -> dict[str, float | None]:
    """||W||_2 (one Jacobi step), mu = lambda_max((W + W^T)/2), and the equilibrium bound 1/(1 - mu)
    (None when mu >= 1: no bound of this form)."""
    w = np.asarray(w, np.float64)
    norm = float(np.linalg.norm(w, 2)) if w.size else 0.0
    mu = float(np.linalg.eigvalsh((w + w.T) / 2)[-1]) if w.size else 0.0
    return {"step_lipschitz": norm, "mu": mu, "equilibrium_lipschitz": 1.0 / (1.0 - mu) if mu < 1 else None}


def feedforward_bound(thetas) -> float:
    """The product of the layers' spectral norms: the usual Lipschitz bound of the feedforward net."""
    return float(np.prod([np.linalg.norm(np.asarray(t, np.float64), 2) for t in thetas]))
