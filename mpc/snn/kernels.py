"""Time loops of the spiking op family (snn.*), compiled with numba.

This module imports only NumPy and numba, so the NumPy backend embeds its source in `model.py`
unchanged (the interpreter and model.py run the same loops). Every array is time-major: axis 0
is the time step, the other axes are flattened into one axis of M independent units.

- `lif_run`: discrete leaky integrate-and-fire, u_t = β·u_{t−1} + x_t, spike s_t = [u_t ≥ θ],
  then soft reset (u_t −= θ·s_t) or reset to zero; after a spike the unit is refractory for
  `refractory` steps (its input is ignored, its membrane held, no spike). u_0 = v0·θ.
- `maxpool_run`: the spiking max-pool: at each step every window passes the spike of the input
  unit with the highest running spike count (steps 0..t inclusive; ties go to the first unit in
  row-major window order).
- `nlif_run`: the non-leaky n-LIF neuron with exponential synaptic kernel, read out at one step
  and firing once at the time that encodes its output (time-to-first-spike, see mpc.ir.ops_snn).
"""

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def lif_run(x, theta, beta, soft, refractory, v0):
    """Spikes [T, M] of LIF units driven by currents x [T, M] with thresholds theta [M]."""
    steps, m = x.shape
    out = np.zeros_like(x)
    for j in prange(m):
        th = theta[j]
        u = v0 * th
        wait = 0
        for t in range(steps):
            if wait > 0:
                wait -= 1
                continue
            u = beta * u + x[t, j]
            if u >= th:
                out[t, j] = 1.0
                u = u - th if soft else 0.0 * u
                wait = refractory
    return out


@njit(cache=True, parallel=True)
def maxpool_run(x, kh, kw, sh, sw, oh, ow):
    """The spiking max-pool of x [T, B, H, W] (B = N·C): [T, B, oh, ow]."""
    steps, b, h, w = x.shape
    out = np.zeros((steps, b, oh, ow), x.dtype)
    for q in prange(b):
        count = np.zeros((h, w), np.int64)
        for t in range(steps):
            count += x[t, q] != 0
            for i in range(oh):
                for j in range(ow):
                    best, bi, bj = -1, 0, 0
                    for di in range(kh):
                        for dj in range(kw):
                            c = count[i * sh + di, j * sw + dj]
                            if c > best:
                                best, bi, bj = c, i * sh + di, j * sw + dj
                    out[t, q, i, j] = x[t, q, bi, bj]
    return out


@njit(cache=True, parallel=True)
def nlif_run(x, bias, decay, kconst, readout, fire_at, tau, dt):
    """n-LIF spikes [S, M]: V = K·(Σ_k x_k − Σ_k x_k·decay^(readout−k)) + bias at step `readout`;
    a unit with V > 0 fires once, at step fire_at + round(τ·ln(1 − min(V, 1)/K)/dt)."""
    steps, m = x.shape
    out = np.zeros_like(x)
    for j in prange(m):
        total, trace = 0.0, 0.0
        for t in range(readout + 1):
            trace = trace * decay + x[t, j]
            total += x[t, j]
        v = kconst * (total - trace) + bias[j]
        if v <= 0.0:
            continue
        k = fire_at + int(np.round(tau * np.log(1.0 - min(v, 1.0) / kconst) / dt))
        if 0 <= k < steps:
            out[k, j] = 1.0
    return out
