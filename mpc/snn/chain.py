"""A whole spiking MLP in one compiled loop: the kernel of `snn.chain` (imports only NumPy and numba, so
the NumPy backend embeds this source in model.py unchanged and the interpreter runs the same loops).

The network is a constant input current x [N, D] (the output of the first, hoisted synapse), K layers of
LIF neurons joined by K − 1 synapses, and a last synapse read out as a membrane:

    layer 0 is driven by x at every step; layer j ≥ 1 by I_j(t) = s_{j−1}(t)·W_j + b_j;
    each LIF layer: u_t = β·u_{t−1} + I_t, spike when u_t ≥ θ, soft reset (u −= θ) or reset to zero,
    `refractory` steps without input after a spike, u_0 = v0·θ (the rule of mpc.snn.kernels.lif_run);
    readout: r_t = β_r·r_{t−1} + (s_K(t)·W_{K+1} + b_{K+1}) in float64, result r_T / T.

`chain_run` runs one sample at a time (samples in parallel) and steps through time once for the whole
network, keeping every layer's membrane in small local arrays, so no [T, N, H] intermediate is ever
stored. A synapse's current is the sum of the rows of W over the inputs that spiked (event-driven), in
increasing input order, plus the bias; a synapse marked sparse walks only the non-zero weights of those
rows (compressed rows), so it skips both absent spikes and zero weights. The values are the dense
product's up to the order of the additions (exact whenever the partial sums are, e.g. weights on a
dyadic grid).
"""

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")   # inlined: a call per layer and step costs 1.5x
def _lif_step(u, wait, cur, th, beta, soft, refr, act):
    """One step of the units of u on currents cur; the indices of those that fire go to act; their count."""
    if refr > 0:
        return _lif_step_refractory(u, wait, cur, th, beta, soft, refr, act)
    if not soft:
        return _lif_step_zero(u, cur, th, beta, act)
    m = 0
    for k in range(u.shape[0]):   # branch-free (selects): spikes of rate-coded layers are unpredictable
        v = beta * u[k] + cur[k]
        f = v >= th[k]
        u[k] = v - th[k] if f else v
        act[m] = k
        m += f
    return m


@njit(cache=True, inline="always")
def _lif_step_zero(u, cur, th, beta, act):
    """_lif_step with reset to zero (0·v, as snn.lif computes it)."""
    m = 0
    for k in range(u.shape[0]):
        v = beta * u[k] + cur[k]
        f = v >= th[k]
        u[k] = 0.0 * v if f else v
        act[m] = k
        m += f
    return m


@njit(cache=True, inline="always")
def _lif_step_refractory(u, wait, cur, th, beta, soft, refr, act):
    """_lif_step with refractory steps: a unit that fired ignores its input and holds its membrane."""
    m = 0
    for k in range(u.shape[0]):
        if wait[k] > 0:
            wait[k] -= 1
            continue
        v = beta * u[k] + cur[k]
        if v >= th[k]:
            act[m] = k
            m += 1
            v = v - th[k] if soft else 0.0 * v
            wait[k] = refr
        u[k] = v
    return m


@njit(cache=True, inline="always")
def _synapse(acc, act, m, w, b, sp, ptr, idx, val):
    """acc[:h] = (Σ over the m active inputs of their rows of w, or of its compressed rows) + b."""
    h = b.shape[0]
    for k in range(h):
        acc[k] = 0
    for j in range(m):
        i = act[j]
        if sp:
            for e in range(ptr[i], ptr[i + 1]):
                acc[idx[e]] += val[e]
            continue
        row = w[i]
        for k in range(h):   # a contiguous row: vectorizes
            acc[k] += row[k]
    for k in range(h):
        acc[k] = acc[k] + b[k]


@njit(cache=True, inline="always")
def _sample(x, out, steps, ws, bs, ths, beta, soft, refr, v0, sp, ptrs, idxs, vals, rbeta, noff):
    """One sample: x [D] constant current -> out [H] readout (membranes in local arrays)."""
    layers = len(ths)
    u, wait = np.empty(noff[layers], x.dtype), np.zeros(noff[layers], np.int64)
    for j in range(layers):
        u[noff[j]:noff[j + 1]] = v0[j] * ths[j]
    acc, act = np.empty(noff[layers] + out.shape[0], x.dtype), np.empty(noff[layers], np.int64)
    r = np.zeros(out.shape[0], np.float64)
    for t in range(steps):
        m = _lif_step(u[:noff[1]], wait[:noff[1]], x, ths[0], beta[0], soft[0], refr[0], act)
        for j in range(1, layers + 1):
            _synapse(acc, act, m, ws[j - 1], bs[j - 1], sp[j - 1], ptrs[j - 1], idxs[j - 1], vals[j - 1])
            if j < layers:
                m = _lif_step(u[noff[j]:noff[j + 1]], wait[noff[j]:noff[j + 1]], acc, ths[j], beta[j], soft[j],
                              refr[j], act)
        for k in range(r.shape[0]):
            r[k] = rbeta * r[k] + acc[k]
    for k in range(r.shape[0]):
        out[k] = r[k] / steps


@njit(cache=True, parallel=True)
def chain_run(x, steps, ws, bs, ths, beta, soft, refr, v0, sp, ptrs, idxs, vals, rbeta):
    """x [N, D] constant currents -> [N, H] readout; ws, bs, ths, ptrs, idxs, vals: tuples, one per layer."""
    layers = len(ths)
    noff = np.zeros(layers + 1, np.int64)
    for j in range(layers):
        noff[j + 1] = noff[j] + ths[j].shape[0]
    out = np.empty((x.shape[0], bs[layers - 1].shape[0]), x.dtype)
    for q in prange(x.shape[0]):   # samples in parallel; each runs the whole network through time
        _sample(x[q], out[q], steps, ws, bs, ths, beta, soft, refr, v0, sp, ptrs, idxs, vals, rbeta, noff)
    return out


def _csr(w, sparse):
    """(row pointers, columns, values) of w's non-zeros row by row; empty for a synapse that stays dense."""
    if not sparse:
        return np.zeros(1, np.int64), np.zeros(0, np.uint32), np.zeros(0, w.dtype)
    rows, cols = np.nonzero(w)
    ptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=w.shape[0]))]).astype(np.int64)
    return ptr, cols.astype(np.uint32), np.ascontiguousarray(w[rows, cols])   # unsigned: no wraparound test


def _vector(v, dtype, n):
    """v (a scalar or [n]) as a new contiguous, writable [n] array (numba types read-only arrays apart)."""
    return np.array(np.broadcast_to(np.asarray(v, dtype).reshape(-1), (n,)), dtype)


def snn_chain(x, params, steps, beta, soft, refractory, v0, sparse, readout_beta):
    """The NumPy entry point: x [N, D]; params = θ_0, (W_j, b_j, θ_j) for j = 1..K−1, then W_K, b_K."""
    x = np.ascontiguousarray(x)
    layers, dt = len(beta), x.dtype
    ws = tuple(np.array(params[3 * j - 2], dt, order="C") for j in range(1, layers + 1))   # writable copies
    bs = tuple(_vector(params[3 * j - 1], dt, ws[j - 1].shape[1]) for j in range(1, layers + 1))
    widths = [x.shape[1]] + [w.shape[1] for w in ws]
    ths = tuple(_vector(params[3 * j] if j else params[0], dt, widths[j]) for j in range(layers))
    csr = [_csr(w, s) for w, s in zip(ws, sparse)]
    return chain_run(x, int(steps), ws, bs, ths, np.asarray(beta, dt), np.asarray(soft, np.bool_),
                     np.asarray(refractory, np.int64), np.asarray(v0, dt), np.asarray(sparse, np.bool_),
                     tuple(c[0] for c in csr), tuple(c[1] for c in csr), tuple(c[2] for c in csr),
                     float(readout_beta))
