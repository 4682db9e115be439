"""Hopfield relaxation kernels (NumPy only, so the NumPy backend can embed this file in model.py).

A layered Hopfield network holds one state block s_k per layer k = 0..L-1 (hidden layers, then the
output). Layer k couples to layer j through a weight block B_kj (k <- j, shape [n_k, n_j]); only layer 0
sees the input, through theta0. The equilibrium is the fixed point

    s_k = f_k(sum_j B_kj s_j + theta0 x [k = 0] + b_k),

the stationary point of the per-neuron energies E_k = G(s_k) - s_k W_k s - s_k theta0_k x with
G' = f^-1 (R. K. Hoier, "Local learning rules for deep neural networks with two-state neurons",
PhD thesis, Chalmers University of Technology, 2025, ch. 4). Two schedules reach it from
s = 0: `sweeps` updates the layers one at a time in layer order (Gauss-Seidel), `jacobi` updates all
at once. The relaxation matrix products are BLAS calls on [N, n] blocks; a compiled loop would not be
faster, so there is no numba here.
"""
import numpy as np

ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh")


def hop_act(name, u):
    """The activation f of one layer, by name (one of ACTIVATIONS)."""
    if name == "relu":
        return np.maximum(u, u.dtype.type(0))
    if name == "sigmoid":
        return 1 / (1 + np.exp(-u))
    if name == "tanh":
        return np.tanh(u)
    return u


def hop_split(s, sizes):
    """The per-layer blocks of a concatenated state [N, S]."""
    return np.split(s, np.cumsum(sizes)[:-1], axis=-1)


def hop_drive(k, states, blocks, couplings, c):
    """The pre-activation of layer k: its constant drive c[k] plus every incoming coupling."""
    u = c[k].copy()
    for (dst, src), b in zip(couplings, blocks):
        if dst == k:
            u += states[src] @ b.T
    return u


def hop_constants(x, theta0, bias, sizes):
    """Per-layer constant drives: theta0 x + b for layer 0, b for the others; shape [N, n_k] each."""
    b = hop_split(bias, sizes)
    n = x.shape[0]
    c = [np.broadcast_to(bk, (n, bk.shape[0])).astype(x.dtype) for bk in b]
    c[0] = x @ theta0.T + b[0]
    return c


def hop_step(states, blocks, couplings, c, acts, jacobi, damping=1.0):
    """One iteration (one Gauss-Seidel sweep, or one Jacobi update); returns the new states and the
    largest change of any unit. With damping g < 1 a layer takes f((1 - g) s_k + g u_k) instead of f(u_k):
    for relu and identity layers this is a forward-backward step, which converges for every small
    enough g when I - W is strongly monotone (e.g. W skew-symmetric) even where the plain iteration
    diverges."""
    old = list(states)
    new = list(states)
    for k in range(len(states)):
        src = old if jacobi else new
        u = hop_drive(k, src, blocks, couplings, c)
        new[k] = hop_act(acts[k], u if damping == 1.0 else (1 - damping) * old[k] + damping * u)
    return new, hop_maxabs(a - b for a, b in zip(new, old))


def hop_maxabs(arrays):
    """The largest |entry| over arrays; nan when any entry is nan (a diverged state must not read as 0)."""
    worst = 0.0
    for a in arrays:
        m = float(np.max(np.abs(a), initial=0.0))
        if not m <= worst:   # also true for nan, so nan propagates
            worst = m
    return worst


def hop_relax_stats(x, theta0, bias, blocks, sizes, acts, couplings, jacobi, tol, max_iter, damping=1.0):
    """Relax from s = 0: returns (s [N, S], iterations, converged), where `iterations` is the first t
    whose state s_t moves by at most `tol` in the next iteration (the fixed point up to tol); without
    convergence, s_max_iter, max_iter and False."""
    c = hop_constants(x, theta0, bias, sizes)
    states = [np.zeros_like(ck) for ck in c]
    states, _ = hop_step(states, blocks, couplings, c, acts, jacobi, damping)
    for t in range(1, max_iter):
        nxt, change = hop_step(states, blocks, couplings, c, acts, jacobi, damping)
        if change <= tol:
            return np.concatenate(states, axis=-1), t, True
        states = nxt
    return np.concatenate(states, axis=-1), max_iter, False


def hop_relax(x, theta0, bias, blocks, sizes, acts, couplings, jacobi, tol, max_iter, damping=1.0):
    """The relaxed state [N, S] (see hop_relax_stats); at most max_iter iterations."""
    return hop_relax_stats(x, theta0, bias, blocks, sizes, acts, couplings, jacobi, tol, max_iter, damping)[0]


def hop_residual(s, x, theta0, bias, blocks, sizes, acts, couplings):
    """max |s - f(W s + theta0 x + b)| over units and samples: how far s is from the equilibrium."""
    states = hop_split(s, sizes)
    c = hop_constants(x, theta0, bias, sizes)
    return hop_maxabs(hop_act(acts[k], hop_drive(k, states, blocks, couplings, c)) - states[k]
                      for k in range(len(states)))
