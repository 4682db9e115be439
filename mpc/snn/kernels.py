"""Time loops of the spiking op family (snn.*), compiled with numba.

This module imports only NumPy and numba, so the NumPy backend embeds its source in `model.py`
unchanged (the interpreter and model.py run the same loops). Every array is time-major: axis 0
is the time step, the other axes are flattened into one axis of M independent units.

- `lif_run`: discrete leaky integrate-and-fire, u_t = β·u_{t−1} + x_t, spike s_t = [u_t ≥ θ],
  then soft reset (u_t −= θ·s_t) or reset to zero; after a spike the unit is refractory for
  `refractory` steps (its input is ignored, its membrane held, no spike). u_0 = v0·θ.
- `maxpool_run`: the spiking max-pool: at each step every window passes the spike of its leader, the
  input unit with the highest running spike count (steps 0..t inclusive). The leader changes only to a
  unit whose count exceeds the leader's (the first such in row-major order, at the highest count); at
  the start it is the window's first unit. For single-spike (time-to-first-spike) trains this passes
  exactly the earliest spike: the max-pool of the values they encode.
- `nlif_run`: the non-leaky n-LIF neuron with exponential synaptic kernel, read out at one step
  and firing once at the time that encodes its output (time-to-first-spike, see mpc.ir.ops_snn).
- `snn_*`: the NumPy entry points (reshapes around the loops), one per op kind.
"""

import numpy as np
from numba import njit, prange

_LIF_BLOCK = 64   # units per parallel block: each step reads a contiguous run of the block's row


@njit(cache=True, parallel=True)
def lif_run(x, theta, beta, soft, refractory, v0):
    """Spikes [T, M] of LIF units driven by currents x [T, M] with thresholds theta [M]."""
    steps, m = x.shape
    out = np.zeros_like(x)
    for blk in prange((m + _LIF_BLOCK - 1) // _LIF_BLOCK):
        j0 = blk * _LIF_BLOCK
        n = min(m, j0 + _LIF_BLOCK) - j0
        u = np.empty(n, x.dtype)
        wait = np.zeros(n, np.int64)
        for k in range(n):
            u[k] = v0 * theta[j0 + k]
        for t in range(steps):
            for k in range(n):
                if wait[k] > 0:
                    wait[k] -= 1
                    continue
                v = beta * u[k] + x[t, j0 + k]
                if v >= theta[j0 + k]:
                    out[t, j0 + k] = 1.0
                    v = v - theta[j0 + k] if soft else 0.0 * v
                    wait[k] = refractory
                u[k] = v
    return out


@njit(cache=True)   # not parallel: a parallel loop costs seconds of compilation in every fresh cache
def maxpool_run(x, kh, kw, sh, sw, oh, ow):
    """The spiking max-pool of x [T, B, H, W] (B = N·C): [T, B, oh, ow]."""
    steps, b, h, w = x.shape
    out = np.zeros((steps, b, oh, ow), x.dtype)
    for q in range(b):
        count = np.zeros((h, w), np.int64)
        lead_i = np.zeros((oh, ow), np.int64)
        lead_j = np.zeros((oh, ow), np.int64)
        for i in range(oh):
            for j in range(ow):
                lead_i[i, j], lead_j[i, j] = i * sh, j * sw
        for t in range(steps):
            count += x[t, q] != 0
            for i in range(oh):
                for j in range(ow):
                    bi, bj = lead_i[i, j], lead_j[i, j]
                    for di in range(kh):
                        for dj in range(kw):
                            if count[i * sh + di, j * sw + dj] > count[bi, bj]:
                                bi, bj = i * sh + di, j * sw + dj
                    lead_i[i, j], lead_j[i, j] = bi, bj
                    out[t, q, i, j] = x[t, q, bi, bj]
    return out


@njit(cache=True)
def nlif_run(x, bias, decay, kconst, readout, fire_at, tau, dt):
    """n-LIF spikes [S, M]: V = K·(Σ_k x_k − Σ_k x_k·decay^(readout−k)) + bias at step `readout`;
    a unit with V > 0 fires once, at step fire_at + round(τ·ln(1 − min(V, 1)/K)/dt)."""
    steps, m = x.shape
    out = np.zeros_like(x)
    for j in range(m):
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


# -- NumPy entry points: the snn ops' kernels (the interpreter and model.py both call these) --
def window_steps(dt, window):
    """Steps per n-LIF window."""
    return round(window / dt)


def kernel_constant(tau, window):
    """K = 1/(1 − e^{−W/τ}): a spike at the start of a window reads 1 at its end."""
    return 1.0 / -np.expm1(-window / tau)


def ttfs_steps(x, fire_at, tau, window, dt):
    """The step of each value's spike (x clipped to [0, 1]), −1 where x <= 0 (no spike)."""
    k = kernel_constant(tau, window)
    v = np.minimum(x.astype(np.float64), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        step = fire_at + np.round(tau * np.log1p(-v / k) / dt)
    return np.where(x > 0, step, -1).astype(np.int64)


def per_unit(theta, shape):
    """theta (a scalar or one per channel, axis 2 of `shape`) as one float64 value per unit of a step."""
    th = np.asarray(theta, np.float64).reshape(-1)
    if th.size != 1:
        th = th.reshape((1, -1) + (1,) * (len(shape) - 3))
    return np.ascontiguousarray(np.broadcast_to(th, shape[1:]).reshape(-1))


def snn_encode(x, mode, timesteps, seed, dt, tau, window):
    """[N, ...] -> [T, N, ...]: constant current, seeded Poisson spikes, or one time-to-first-spike."""
    shape = (timesteps,) + x.shape
    if mode == "constant":
        return np.broadcast_to(x, shape).copy()
    if mode == "poisson":
        return (np.random.default_rng(seed).random(shape) < np.clip(x, 0, 1)).astype(x.dtype)
    out = np.zeros(shape, x.dtype)
    step = ttfs_steps(x, window_steps(dt, window), tau, window, dt)
    idx = np.nonzero(step >= 0)
    out[(step[idx],) + idx] = 1
    return out


def snn_lif(x, theta, beta, soft, refractory, v0):
    """LIF spikes of the currents x [T, N, ...] (see lif_run), in x's dtype."""
    x2 = np.ascontiguousarray(x.reshape(x.shape[0], -1))
    th = per_unit(theta, x.shape).astype(x.dtype)
    out = lif_run(x2, th, x.dtype.type(beta), bool(soft), int(refractory), x.dtype.type(v0))
    return out.reshape(x.shape)


def snn_maxpool(x, kernel, strides):
    """The spiking max-pool of [T, N, C, H, W] (see maxpool_run)."""
    oh = (x.shape[-2] - kernel[0]) // strides[0] + 1
    ow = (x.shape[-1] - kernel[1]) // strides[1] + 1
    x4 = np.ascontiguousarray(x.reshape((x.shape[0], -1) + x.shape[-2:]))
    out = maxpool_run(x4, kernel[0], kernel[1], strides[0], strides[1], oh, ow)
    return out.reshape(x.shape[:-2] + (oh, ow))


def snn_nlif(x, bias, dt, tau, window, layer):
    """n-LIF spikes of the currents x [S, N, C, ...] of layer `layer` (see nlif_run)."""
    x2 = np.ascontiguousarray(x.reshape(x.shape[0], -1))
    b = np.zeros(x2.shape[1]) if bias is None else per_unit(bias, x.shape)
    sw = window_steps(dt, window)
    out = nlif_run(x2, b, np.exp(-dt / tau), kernel_constant(tau, window), layer * sw, (layer + 1) * sw, tau, dt)
    return out.astype(x.dtype).reshape(x.shape)


def snn_decode(x, mode, beta, dt, tau, window, readout):
    """[T, N, ...] -> [N, ...]: count, rate, membrane (u_T / T), first_spike (dt·t) or ttfs (kernel value)."""
    steps = x.shape[0]
    if mode == "count":
        return x.sum(0, dtype=np.float64).astype(x.dtype)
    if mode == "rate":
        return (x.sum(0, dtype=np.float64) / steps).astype(x.dtype)
    if mode == "membrane":
        decay = beta ** np.arange(steps - 1, -1, -1, dtype=np.float64)
        return (np.tensordot(decay, x.astype(np.float64), 1) / steps).astype(x.dtype)
    fired = x != 0
    first = np.where(fired.any(0), fired.argmax(0), steps)
    if mode == "first_spike":
        return (first * dt).astype(x.dtype)
    gap = np.maximum(readout - first, 0).astype(np.float64)
    val = kernel_constant(tau, window) * -np.expm1(-gap * dt / tau)
    return np.where(first <= readout, val, 0.0).astype(x.dtype)


def snn_lif_rec(x, theta, w_rec, beta, soft, refractory, v0):
    """Recurrent LIF spikes of x [T, N, C]: the update of lif_run with the previous step's spikes fed back,
    u_t = β·u_{t−1} + x_t + s_{t−1}·w_rec (w_rec [C, C], row i: the synapses out of unit i), in x's dtype.

    Vectorized over the N·C units per step (T is short; the recurrent product is one matrix multiply per step).
    """
    dt = x.dtype.type
    th = per_unit(theta, x.shape).reshape(x.shape[1:]).astype(x.dtype)
    u = dt(v0) * th
    s = np.zeros(x.shape[1:], x.dtype)
    wait = np.zeros(x.shape[1:], np.int64)
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        active = wait == 0
        v = dt(beta) * u + x[t] + s @ w_rec
        s = ((v >= th) & active).astype(x.dtype)
        v = v - th * s if soft else v * (1 - s)
        u = np.where(active, v, u)
        wait = np.where(active, (s > 0) * refractory, wait - 1)
        out[t] = s
    return out
