"""An independent float64 margin-propagation reference, written from the definition (not from mpc.mp).

For x, w ∈ R^D: p = [w + x; −w − x], q = [w − x; −w + x]; α solves Σ_i [p_i − α]_+ = γ, β the same
for q, and y_MP = (γD/2)(α − β). The threshold is found by sorting descending: with S_k the sum of the
k largest entries, α = (S_k − γ)/k for the one k where that value is consistent, s_k > α ≥ s_(k+1)
(f(α) = Σ [p_i − α]_+ is strictly decreasing where positive, so exactly one k qualifies).
"""
from __future__ import annotations

import numpy as np


def thresholds(v: np.ndarray, gamma: float) -> np.ndarray:
    """α for every row of v (R, n): Σ_i [v_i − α]_+ = γ, by the consistent k of the sorted row."""
    s = -np.sort(-np.asarray(v, np.float64), axis=1)
    k = np.arange(1, s.shape[1] + 1)
    cand = (np.cumsum(s, axis=1) - gamma) / k
    below = np.concatenate([s[:, 1:], np.full((s.shape[0], 1), -np.inf)], axis=1)
    consistent = (s > cand) & (cand >= below)
    assert consistent.any(axis=1).all(), "no consistent k: gamma must be > 0"
    return cand[np.arange(s.shape[0]), consistent.argmax(axis=1)]


def y_mp(x: np.ndarray, w: np.ndarray, gamma: float) -> np.ndarray:
    """(γD/2)(α − β) for every row pair of x (N, D) and w (H, D): (N, H), float64."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n, d = x.shape
    u = (w[None, :, :] + x[:, None, :]).reshape(-1, d)    # w + x for every pair
    v = (w[None, :, :] - x[:, None, :]).reshape(-1, d)    # w − x
    alpha = thresholds(np.concatenate([u, -u], axis=1), gamma)
    beta = thresholds(np.concatenate([v, -v], axis=1), gamma)
    return (gamma * d / 2 * (alpha - beta)).reshape(n, w.shape[0])


def patches(x: np.ndarray, kh: int, kw: int, strides, pads, dilations) -> tuple[np.ndarray, int, int]:
    """im2col of x (N, C, H, W): rows (N·OH·OW, C·kh·kw) in (c, i, j) order, and OH, OW."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    n, c, h, w = x.shape
    oh = (h - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (w - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    rows = np.empty((n, oh, ow, c, kh, kw))
    for i in range(kh):
        for j in range(kw):
            top, left = i * dilations[0], j * dilations[1]
            rows[:, :, :, :, i, j] = x[:, :, top:top + strides[0] * oh:strides[0],
                                       left:left + strides[1] * ow:strides[1]].transpose(0, 2, 3, 1)
    return rows.reshape(n * oh * ow, c * kh * kw), oh, ow
