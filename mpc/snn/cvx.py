"""Convex readout reconstruction: the globally optimal readout over a frozen spiking network's dictionary.

Freeze the hidden spiking layers (the "witnesses"), run a dataset through them and stack what the last
hidden layer emits (spike patterns at chosen steps, or spike counts/rates) into a dictionary Φ of N
samples × M columns; duplicate and all-zero columns are removed (they change neither the optimum value
nor the function, see `build_dictionary`). Training the readout alone with weight decay is then the convex
problem (Ergen and Pilanci et al., "Globally optimal training of neural networks with threshold
activation functions"; Mishkin-style readout reconstruction for spiking networks)

    P(B) = F(Φ B) + λ Ω(B),   B of shape [M, K],

F the mean loss over the N samples (squared, binary logistic with labels ±1, or softmax cross entropy with
one-hot labels) and Ω either the elementwise ℓ1 norm (Lasso) or the sum of the ℓ2 norms of B's rows
(group Lasso: one group per dictionary column, all its class weights together).

Solver: FISTA (Beck and Teboulle, "A fast iterative shrinkage-thresholding algorithm") with the gradient
restart of O'Donoghue and Candès ("Adaptive restart for accelerated gradient schemes") and an adaptive step
1/L: L shrinks by 0.8 after every step and doubles until the usual sufficient-decrease test holds, never
beyond the global Lipschitz bound c·σ_max(Φ)²/N (c = 1 squared, 1/4 logistic, 1/2 softmax), where the test
always holds. Near a confident optimum the local curvature of the logistic and softmax losses is far below
that bound, so the adaptive step takes many fewer iterations; the certificate does not depend on it.
For small problems (M·K ≤ NEWTON_MAX_VARS weights) `solve` uses proximal Newton instead: the Hessian of F
costs N·(M·K)² once per step, each step's quadratic model plus λΩ is minimized by a compiled FISTA, and a
handful of steps replace thousands of first-order iterations (the 2-class problems, where the logistic-like
loss is nearly flat along the separating directions, are the slow case for FISTA). A two-class softmax
problem is first rewritten as the logistic Lasso it equals (see `_two_class`), halving the unknowns.

Certificate: the Fenchel dual of P is D(Θ) = −F*(Θ) subject to Ω°(Φᵀ Θ) ≤ λ (Ω° the dual norm: the largest
|entry|, or the largest row ℓ2 norm). Every iterate gives a dual point: Θ = ∇F(Φ B) scaled by
min(1, λ / Ω°(Φᵀ ∇F(Φ B))), which is feasible and lies in the domain of F* (for the logistic and softmax
losses the scaling is a convex combination of the model's probabilities and the labels). Weak duality
makes D(Θ) ≤ min P for every such Θ (FISTA evaluates it on every 10th iterate, as it costs one more
Φᵀ product; the stopping test only ever uses evaluated bounds); the solver stops when the relative gap
(min P − max D)/|min P| is at most `tol` (default 1e-6) and otherwise reports why it stopped.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

import numba
import numpy as np
from scipy.special import xlogy

from mpc.errors import BadInput


class Loss(enum.Enum):
    """The readout's loss F."""

    SQUARED = "squared"
    LOGISTIC = "logistic"
    SOFTMAX = "softmax"


# -- losses: value F(Z), gradient ∇F(Z), conjugate F*(Θ); Y is [N, K] (±1 for logistic, one-hot for softmax)
def loss_value_grad(loss: Loss, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """(F(Z), ∇F(Z)): the mean loss over the N rows and its gradient, sharing one exponential."""
    n = z.shape[0]
    if loss is Loss.SQUARED:
        r = z - y
        return float(0.5 * np.sum(r * r) / n), r / n
    if loss is Loss.LOGISTIC:
        m = -y * z
        soft = np.logaddexp(0.0, m)
        return float(np.sum(soft) / n), -y * np.exp(m - soft) / n   # −y·σ(−y z)/N, stable for large |z|
    return _softmax_value_grad(np.ascontiguousarray(z), np.ascontiguousarray(y))


@numba.njit(cache=True)
def _softmax_value_grad(z, y):
    """Softmax cross entropy and its gradient in one pass over the rows (NumPy's reductions over K ≈ 2..10
    columns cost more in call overhead than in arithmetic; the solver's hottest function)."""
    n, k = z.shape
    g = np.empty_like(z)
    value = 0.0
    for i in range(n):
        top = z[i, 0]
        for c in range(1, k):
            top = max(top, z[i, c])
        total = 0.0
        for c in range(k):
            g[i, c] = np.exp(z[i, c] - top)
            total += g[i, c]
        value += top + np.log(total)
        for c in range(k):
            value -= y[i, c] * z[i, c]
            g[i, c] = (g[i, c] / total - y[i, c]) / n
    return value / n, g


def loss_value(loss: Loss, z: np.ndarray, y: np.ndarray) -> float:
    """F(Z): the mean loss over the N rows."""
    return loss_value_grad(loss, z, y)[0]


def loss_grad(loss: Loss, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """∇F(Z)."""
    return loss_value_grad(loss, z, y)[1]


def loss_conjugate(loss: Loss, theta: np.ndarray, y: np.ndarray) -> float:
    """F*(Θ) for a Θ in its domain (probabilities are clipped to [0, 1] against rounding)."""
    n = theta.shape[0]
    if loss is Loss.SQUARED:
        return float(np.sum(theta * y) + 0.5 * n * np.sum(theta ** 2))
    if loss is Loss.LOGISTIC:
        u = np.clip(-n * y * theta, 0.0, 1.0)       # the probability of the wrong sign
        return float(np.sum(xlogy(u, u) + xlogy(1.0 - u, 1.0 - u)) / n)
    p = np.clip(n * theta + y, 0.0, 1.0)            # the model's class probabilities
    return float(np.sum(xlogy(p, p)) / n)


_CURVATURE = {Loss.SQUARED: 1.0, Loss.LOGISTIC: 0.25, Loss.SOFTMAX: 0.5}


# -- penalty Ω, its proximal map and its dual norm ---------------------------------------------
def penalty(b: np.ndarray, group: bool) -> float:
    """Ω(B): sum of row ℓ2 norms (group) or of absolute values."""
    return float(np.sum(np.linalg.norm(b, axis=1)) if group else np.sum(np.abs(b)))


def prox(b: np.ndarray, t: float, group: bool) -> np.ndarray:
    """argmin_X ½‖X − B‖² + t Ω(X): row-wise or elementwise soft thresholding."""
    if not group:
        return np.sign(b) * np.maximum(np.abs(b) - t, 0.0)
    norms = np.linalg.norm(b, axis=1, keepdims=True)
    return b * np.maximum(1.0 - t / np.maximum(norms, 1e-300), 0.0)


def dual_norm(g: np.ndarray, group: bool) -> float:
    """Ω°(G): the largest row ℓ2 norm (group) or the largest |entry|."""
    return float(np.max(np.linalg.norm(g, axis=1)) if group else np.max(np.abs(g)))


def lambda_max(phi: np.ndarray, y: np.ndarray, loss: Loss, group: bool) -> float:
    """The smallest λ for which B = 0 is optimal: Ω°(Φᵀ ∇F(0))."""
    return dual_norm(phi.T @ loss_grad(loss, np.zeros_like(y, dtype=np.float64), y), group)


@dataclass
class Solution:
    """A solved readout: weights [M, K], the certificate and how the solve ended."""

    beta: np.ndarray
    primal: float
    dual: float
    gap: float
    rel_gap: float
    iterations: int
    converged: bool
    reason: str
    seconds: float
    lam: float
    history: list[tuple[float, float]] = field(default_factory=list)


def labels_matrix(labels: np.ndarray, loss: Loss, classes: int | None = None) -> np.ndarray:
    """Targets Y [N, K] for the loss: one-hot for softmax and squared, ±1 for logistic (labels 0/1)."""
    labels = np.asarray(labels)
    if loss is Loss.LOGISTIC:
        if not np.isin(labels, (0, 1)).all():
            raise BadInput("the logistic loss wants labels 0 or 1")
        return (2.0 * labels - 1.0).reshape(-1, 1)
    k = int(labels.max()) + 1 if classes is None else classes
    return np.eye(k)[labels.astype(np.int64)]


def dual_point(phi: np.ndarray, grad: np.ndarray, lam: float, group: bool) -> np.ndarray:
    """A dual-feasible Θ from ∇F at an iterate: scaled so that Ω°(Φᵀ Θ) ≤ λ."""
    norm = dual_norm(phi.T @ grad, group)
    return grad if norm <= lam else grad * (lam / norm)


def objective(phi, y, b, loss: Loss, lam: float, group: bool) -> float:
    """P(B) = F(Φ B) + λ Ω(B)."""
    return loss_value(loss, phi @ b, y) + lam * penalty(b, group)


def _prox_step(phi, y, loss, lam, group, state):
    """x = prox(v − ∇/L) with backtracking: L doubles until F(Φx) ≤ F(Φv) + ⟨∇, x − v⟩ + L/2 ‖x − v‖²
    (never beyond the global bound `lip`, where the test always holds)."""
    v, zv = state["v"], state["zv"]
    fv, gv = loss_value_grad(loss, zv, y)
    g = phi.T @ gv
    while True:
        inv_l = 1.0 / state["l"]
        x = prox(v - inv_l * g, lam * inv_l, group)
        zx, d = phi @ x, x - v
        fx, gx = loss_value_grad(loss, zx, y)
        if state["l"] >= state["lip"] or fx <= fv + np.vdot(g, d) + 0.5 * state["l"] * np.vdot(d, d) + 1e-15 * abs(fv):
            return x, zx, fx, gx
        state["l"] = min(2.0 * state["l"], state["lip"])


def _step(phi, y, loss, lam, group, state):
    """One FISTA step with gradient restart and adaptive step; updates state in place, returns (z, F, ∇F) at x."""
    x, zx, t = state["x"], state["zx"], state["t"]
    x_new, z_new, f_new, g_new = _prox_step(phi, y, loss, lam, group, state)
    if np.vdot(state["v"] - x_new, x_new - x) > 0:   # momentum points uphill: restart
        t = 1.0
    t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
    mom = (t - 1.0) / t_new
    state.update(x=x_new, zx=z_new, v=x_new + mom * (x_new - x), zv=z_new + mom * (z_new - zx), t=t_new,
                 l=state["l"] * 0.8)   # try a longer step next time: local curvature is often far below lip
    return z_new, f_new, g_new


DUAL_EVERY = 10   # FISTA evaluates the dual (for the stopping test) on every 10th iterate, and on the last
NEWTON_MAX_VARS = 400   # "auto" picks proximal Newton up to this many weights M·K: its Hessian costs N·(M·K)²


def solve(phi: np.ndarray, y: np.ndarray, lam: float, loss: Loss = Loss.SQUARED, group: bool = False,
          tol: float = 1e-6, max_iter: int = 50_000, keep_history: bool = False, method: str = "auto") -> Solution:
    """min_B F(Φ B) + λ Ω(B), stopped at relative duality gap ≤ tol (see module docstring); method "fista",
    "newton" (proximal Newton, see `solve_newton`) or "auto" (Newton when M·K ≤ NEWTON_MAX_VARS)."""
    phi, y = np.asarray(phi, np.float64), np.asarray(y, np.float64)
    if phi.ndim != 2 or y.ndim != 2 or phi.shape[0] != y.shape[0]:
        raise BadInput(f"the dictionary [N, M] and targets [N, K] must share N, got {phi.shape} and {y.shape}")
    if not lam > 0:
        raise BadInput(f"lambda must be > 0, got {lam}")
    if method not in ("auto", "fista", "newton"):
        raise BadInput(f"solver method must be auto, fista or newton, got '{method}'")
    b0, t0 = np.zeros((phi.shape[1], y.shape[1])), time.perf_counter()
    if loss is Loss.SOFTMAX and y.shape[1] == 2 and method == "auto":
        sol = _two_class(phi, y, lam, group, tol, max_iter, keep_history)
        if sol.converged:
            return sol
    if method == "newton" or (method == "auto" and phi.shape[1] * y.shape[1] <= NEWTON_MAX_VARS):
        sol = solve_newton(phi, y, lam, loss, group, tol, min(max_iter, 100), keep_history)
        if sol.converged or sol.iterations >= max_iter:
            return sol
        b0 = sol.beta   # Newton stalled (inexact model steps near a tight tol): finish by FISTA from its best point
    lip = _CURVATURE[loss] * np.linalg.norm(phi, 2) ** 2 / phi.shape[0]
    z0 = phi @ b0
    lip = max(lip, 1e-300)
    state = {"x": b0, "zx": z0, "v": b0, "zv": z0, "t": 1.0, "l": lip, "lip": lip}
    best_b, best_p, best_d = b0, np.inf, -np.inf
    f, grad = loss_value_grad(loss, z0, y)
    history, reason, it = [], "max_iter", 0
    for it in range(1, max_iter + 1):
        x = state["x"]
        p = f + lam * penalty(x, group)
        if p < best_p:
            best_b, best_p = x, p
        if keep_history or it % DUAL_EVERY == 1 or it == max_iter:   # the dual costs one more Φᵀ product
            d = -loss_conjugate(loss, dual_point(phi, grad, lam, group), y)
            best_d = max(best_d, d)
            if keep_history:
                history.append((p, d))
        if best_p - best_d <= tol * abs(best_p):
            reason = "gap"
            break
        _, f, grad = _step(phi, y, loss, lam, group, state)
    gap = best_p - best_d
    return Solution(best_b, best_p, best_d, gap, gap / max(abs(best_p), 1e-300), it, reason == "gap",
                    reason if reason == "gap" else f"stopped after {max_iter} iterations with the gap above tol",
                    time.perf_counter() - t0, lam, history)


# -- proximal Newton: few outer steps, each a quadratic model solved by FISTA in M·K variables ----------------
def hessian(loss: Loss, phi: np.ndarray, z: np.ndarray) -> np.ndarray:
    """∇²F(Φ B) with respect to B, as an [M·K, M·K] matrix over B's row-major entries."""
    n, m = phi.shape
    k = z.shape[1]
    if loss is Loss.SQUARED:
        return np.kron(phi.T @ phi / n, np.eye(k))
    if loss is Loss.LOGISTIC:
        s = 1.0 / (1.0 + np.exp(-np.abs(z[:, 0])))   # σ(|z|): σ(z)σ(−z) is symmetric in z
        return (phi * (s * (1.0 - s) / n)[:, None]).T @ phi
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    a = (phi[:, :, None] * p[:, None, :]).reshape(n, m * k)    # a[n, (i, c)] = φ_ni p_nc
    h = -(a.T @ a)
    for c in range(k):   # + Σ_n φ_ni φ_nj p_nc on the diagonal class blocks
        h[c::k, c::k] += (phi * p[:, c:c + 1]).T @ phi
    return h / n


def _model_min(h, g, x, lam, group, iters):
    """argmin_W ⟨g, W − X⟩ + ½ (W − X)ᵀ H (W − X) + λ Ω(W) by FISTA (step 1/λ_max(H)) from W = X."""
    inv_l = 1.0 / max(float(np.linalg.eigvalsh(h)[-1]), 1e-300)
    c = g.ravel() - h @ x.ravel()
    w = _model_fista(np.ascontiguousarray(h), c, x.ravel().copy(), lam * inv_l, inv_l, x.shape[1], group, iters)
    return w.reshape(x.shape)


@numba.njit(cache=True)
def _shrink(b, thr, k, group):
    """prox of thr·Ω on a flat row-major [M, K] vector, in place."""
    if not group:
        for i in range(b.size):
            b[i] = np.sign(b[i]) * max(abs(b[i]) - thr, 0.0)
        return
    for i in range(0, b.size, k):
        nrm = 0.0
        for j in range(i, i + k):
            nrm += b[j] * b[j]
        scale = max(1.0 - thr / max(np.sqrt(nrm), 1e-300), 0.0)
        b[i:i + k] *= scale


@numba.njit(cache=True)
def _model_fista(h, c, w, thr, inv_l, k, group, iters):
    """FISTA with gradient restart on ⟨c, W⟩ + ½ Wᵀ H W + λ Ω(W) (a hot loop of small mat-vecs: compiled);
    stops when a step moves no entry by more than 1e-10 relative."""
    v, t = w.copy(), 1.0
    for _ in range(iters):
        w_new = v - inv_l * (c + h @ v)
        _shrink(w_new, thr, k, group)
        step = w_new - w
        if np.max(np.abs(step)) <= 1e-10 * (1.0 + np.max(np.abs(w_new))):
            return w_new
        if np.dot(v - w_new, step) > 0:
            t = 1.0
        t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        v = w_new + (t - 1.0) / t_new * step
        w, t = w_new, t_new
    return w


def _newton_step(phi, y, loss, lam, group, x, f, grad, inner):
    """One damped proximal Newton step from X: model minimizer, then halve until P decreases enough (Armijo)."""
    g = phi.T @ grad
    w = _model_min(hessian(loss, phi, phi @ x), g, x, lam, group, inner)
    d, p_x = w - x, f + lam * penalty(x, group)
    decrease = np.vdot(g, d) + lam * (penalty(w, group) - penalty(x, group))
    step = 1.0
    for _ in range(30):
        x_new = x + step * d
        f_new, grad_new = loss_value_grad(loss, phi @ x_new, y)
        if f_new + lam * penalty(x_new, group) <= p_x + 0.25 * step * min(decrease, 0.0):
            return x_new, f_new, grad_new
        step *= 0.5
    return x, f, grad


def solve_newton(phi, y, lam, loss: Loss, group: bool, tol: float = 1e-6, max_iter: int = 100,
                 keep_history: bool = False) -> Solution:
    """Proximal Newton (Lee, Sun and Saunders, "Proximal Newton-type methods for minimizing composite
    functions"): each step minimizes the second-order model of F plus λΩ by FISTA, then backtracks on P.
    The certificate is the one of `solve` (dual point from ∇F at every outer iterate), so the stop is exact."""
    t0 = time.perf_counter()
    x = np.zeros((phi.shape[1], y.shape[1]))
    f, grad = loss_value_grad(loss, np.zeros_like(y), y)
    best_b, best_p, best_d, history, reason, it = x, np.inf, -np.inf, [], "max_iter", 0
    for it in range(1, max_iter + 1):
        p = f + lam * penalty(x, group)
        d = -loss_conjugate(loss, dual_point(phi, grad, lam, group), y)
        if keep_history:
            history.append((p, d))
        if p < best_p:
            best_b, best_p = x, p
        best_d = max(best_d, d)
        if best_p - best_d <= tol * abs(best_p):
            reason = "gap"
            break
        x_prev = x
        x, f, grad = _newton_step(phi, y, loss, lam, group, x, f, grad, 1000)
        if x is x_prev:
            reason = "stalled"
            break
    gap = best_p - best_d
    return Solution(best_b, best_p, best_d, gap, gap / max(abs(best_p), 1e-300), it, reason == "gap",
                    reason if reason == "gap" else f"stopped after {it} iterations (Newton, {reason}) with the gap above tol",
                    time.perf_counter() - t0, lam, history)


def _two_class(phi, y, lam, group, tol, max_iter, keep_history) -> Solution:
    """Two-class softmax as the logistic Lasso it equals: only w = B₀ − B₁ reaches the loss, and for a given w
    the penalty is least at B = [w/2, −w/2] (group: ‖(w/2, −w/2)‖ = |w|/√2; Lasso: |w|), so solving the
    logistic Lasso in w at λ/√2 (or λ) gives the optimum with half the unknowns. The returned certificate is
    recomputed on the original softmax problem at B, so the stopping test stays the one of `solve`."""
    t0 = time.perf_counter()
    sol = solve(phi, (2.0 * y[:, :1] - 1.0), lam / np.sqrt(2.0) if group else lam, Loss.LOGISTIC, False, tol,
                max_iter, keep_history)
    b = np.hstack([sol.beta / 2.0, -sol.beta / 2.0])
    f, grad = loss_value_grad(Loss.SOFTMAX, phi @ b, y)
    p = f + lam * penalty(b, group)
    d = -loss_conjugate(Loss.SOFTMAX, dual_point(phi, grad, lam, group), y)
    gap = p - d
    ok = gap <= tol * abs(p)
    return Solution(b, p, d, gap, gap / max(abs(p), 1e-300), sol.iterations, ok,
                    "gap" if ok else "two-class reduction above tol", time.perf_counter() - t0, lam, sol.history)


@dataclass
class Dictionary:
    """Φ with its duplicate and all-zero columns removed; `keep[i]` is the source column of Φ's column i."""

    phi: np.ndarray
    keep: np.ndarray
    columns: int

    def expand(self, beta: np.ndarray) -> np.ndarray:
        """Weights for all source columns: each kept column's weight, zero for the removed ones."""
        full = np.zeros((self.columns,) + beta.shape[1:], beta.dtype)
        full[self.keep] = beta
        return full


def build_dictionary(features: np.ndarray) -> Dictionary:
    """Dictionary from witness features [N, M]: unique non-zero columns, in their first-occurrence order.

    A removed duplicate adds nothing (its weight can move onto its twin at no cost in either norm), and an
    all-zero column never changes the loss, so its optimal weight is zero.
    """
    f = np.asarray(features, np.float64)
    if f.ndim != 2:
        raise BadInput(f"witness features must be [N, M], got shape {f.shape}")
    _, first = np.unique(f, axis=1, return_index=True)
    keep = np.sort(first)
    keep = keep[np.any(f[:, keep] != 0, axis=0)]
    return Dictionary(np.ascontiguousarray(f[:, keep]), keep, f.shape[1])
