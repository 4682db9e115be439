"""Reference NumPy kernel of the liquid time-constant (LTC) spiking layer, snn.ltc (see mpc.ir.ops_rnn).

Imports only NumPy, so the NumPy backend embeds this source in model.py unchanged. A plain time loop:
the per-step work is three small matmuls, so NumPy's BLAS does it.
"""

import numpy as np


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def ltc_step(x_t, u, b_adapt, s, w_in, w_rec, b, w_tau, b_tau, w_rho, b_rho, theta0, beta):
    """One step of the LTC layer: (u, b_adapt, s) at t from their values at t − 1."""
    c = x_t @ w_in.T + s @ w_rec.T + b
    rate = _sigmoid(np.concatenate([c, u], axis=1) @ w_tau.T + b_tau)
    rho = _sigmoid(np.concatenate([c, b_adapt], axis=1) @ w_rho.T + b_rho)
    b_adapt = rho * b_adapt + (1 - rho) * s
    theta = theta0 + beta * b_adapt
    u = u + (c - u) * rate
    s = (u >= theta).astype(x_t.dtype)
    return u * (1 - s), b_adapt, s


def ltc_run(x, w_in, w_rec, b, w_tau, b_tau, w_rho, b_rho, theta0, beta):
    """Spikes [T, N, H] of the LTC layer driven by x [T, N, I]; every state starts at zero."""
    n, h = x.shape[1], w_in.shape[0]
    u = np.zeros((n, h), x.dtype)
    b_adapt, s = np.zeros_like(u), np.zeros_like(u)
    out = np.zeros((x.shape[0], n, h), x.dtype)
    for t in range(x.shape[0]):
        u, b_adapt, s = ltc_step(x[t], u, b_adapt, s, w_in, w_rec, b, w_tau, b_tau, w_rho, b_rho, theta0, beta)
        out[t] = s
    return out
