"""Event-driven synapses of spiking layers, compiled with numba (imports only NumPy and numba, so the
NumPy backend embeds this source in model.py unchanged and the interpreter runs the same loops).

A synapse after a spiking layer multiplies a binary spike vector by W: its current is the sum of the
rows of W over the inputs that spiked, plus the bias. `event_linear_run` does this for one sample at a
time (samples run in parallel), step by step, adding only the active rows, and, when thresholds are
given, runs the LIF update of the next layer on that current in the same loop (the rule of
mpc.snn.kernels.lif_run: u_t = β·u_{t−1} + I_t, spike at u_t ≥ θ, soft reset or reset to zero,
refractory steps, u_0 = v0·θ). No [T·N, H] current is ever stored, and the work is proportional to the
number of spikes instead of D·H per row. The current of a step is (Σ of the active rows, in increasing
input order) + bias: the dense product's value up to the order of its additions (exact whenever the
partial sums are, e.g. for weights on a dyadic grid).
"""

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def event_linear_run(x, w, b, theta, fire, beta, soft, refractory, v0):
    """x [T, N, D] (spikes: a nonzero entry is one spike) -> [T, N, H]: spikes of LIF units (fire) or the currents x·w + b."""
    steps, n, d = x.shape
    h = w.shape[1]
    out = np.zeros((steps, n, h), x.dtype)
    for q in prange(n):
        u = np.empty(h, x.dtype)
        wait = np.zeros(h, np.int64)
        acc = np.empty(h, x.dtype)
        active = np.empty(d, np.int64)   # the inputs that spiked at this step, in increasing order
        for k in range(h):
            u[k] = v0 * theta[k]
        for t in range(steps):
            m = 0
            for i in range(d):
                if x[t, q, i] != 0:
                    active[m] = i
                    m += 1
            for k in range(h):
                acc[k] = 0
            for j in range(m):   # separate gather and add loops: the add loop vectorizes over h
                wi = w[active[j]]
                for k in range(h):
                    acc[k] += wi[k]
            if not fire:
                for k in range(h):
                    out[t, q, k] = acc[k] + b[k]
                continue
            for k in range(h):
                if wait[k] > 0:
                    wait[k] -= 1
                    continue
                v = beta * u[k] + (acc[k] + b[k])
                if v >= theta[k]:
                    out[t, q, k] = 1.0
                    v = v - theta[k] if soft else 0.0 * v
                    wait[k] = refractory
                u[k] = v
    return out


def event_linear(x, w, b, theta, beta, soft, refractory, v0):
    """The NumPy entry point: x [T, N, D] spikes, w [D, H], b [H] or None, theta (scalar or [H]) or None."""
    steps, n = x.shape[0], x.shape[1]
    x3 = np.ascontiguousarray(x.reshape(steps, n, -1))
    h = w.shape[1]
    bb = np.zeros(h, x.dtype) if b is None else np.ascontiguousarray(np.broadcast_to(b, (h,)), x.dtype)
    fire = theta is not None
    th = np.ascontiguousarray(np.broadcast_to(np.asarray(0 if theta is None else theta, x.dtype).reshape(-1), (h,)))
    out = event_linear_run(x3, np.ascontiguousarray(w, x.dtype), bb, th, fire, x.dtype.type(beta), bool(soft),
                           int(refractory), x.dtype.type(v0))
    return out
