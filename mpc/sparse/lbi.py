"""Linearized Bregman iterations (LBI) for sparse regression, run layer by layer for post-training masks.

Classic LBI (Yin, Osher, Goldfarb and Darbon, "Bregman iterative algorithms for l1-minimization with
applications to compressed sensing", SIAM J. Imaging Sciences 2008) solves
min μ‖u‖₁ + ‖u‖²/(2δ) subject to Au = f by

    v ← v + τ·Aᵀ(f − Au)/n,        u = δ·shrink(v, μ),        shrink(v, μ) = sign(v)·max(|v| − μ, 0),

from v = u = 0. A weight joins the support only when its accumulated correlation with the residual
crosses μ, so the support grows along the iterations (the regularization path): early iterates are
sparse, late ones fit f. Several right-hand sides (a layer's outputs, one column each) run at once.
Group shrinkage replaces |v| by the Euclidean norm of a group of size S and μ by μ√S, so whole rows
(an output neuron's incoming weights) or conv kernels enter together.

Here A holds a layer's calibration inputs and f its dense outputs: no labels are needed. `lam` is
relative: μ = lam·τ·max_g ‖gradient₀ of group g‖/√S, so the first group enters near iteration `lam`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def shrink(v: np.ndarray, lam: float) -> np.ndarray:
    """Soft threshold: sign(v)·max(|v| − lam, 0)."""
    return np.sign(v) * np.maximum(np.abs(v) - lam, 0.0)


def group_norms(g: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row of g [G, S]."""
    return np.sqrt(np.sum(g * g, axis=1))


def group_shrink(g: np.ndarray, lam: float) -> np.ndarray:
    """Group soft threshold of the rows of g [G, S] at lam·√S (S = 1 is the plain shrink)."""
    if g.shape[1] == 1:
        return shrink(g, lam)
    norms = group_norms(g)
    scale = np.maximum(1.0 - lam * np.sqrt(g.shape[1]) / np.maximum(norms, 1e-300), 0.0)
    return g * scale[:, None]


@dataclass(frozen=True)
class Grouping:
    """How the entries of U [D, H] (inputs × outputs) form groups: rows of a [G, S] view."""

    kind: str = "none"    # none: every entry; rows: an output's incoming weights; kernels: D = C·k
    kernel: int = 1       # taps per input channel (kernels grouping)

    def to_groups(self, u: np.ndarray) -> np.ndarray:
        """U [D, H] as [G, S]."""
        d, h = u.shape
        if self.kind == "rows":
            return u.T.copy()
        if self.kind == "kernels":
            return u.reshape(d // self.kernel, self.kernel, h).transpose(2, 0, 1).reshape(-1, self.kernel)
        return u.reshape(-1, 1)

    def from_groups(self, g: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """The inverse of to_groups."""
        d, h = shape
        if self.kind == "rows":
            return g.T.copy()
        if self.kind == "kernels":
            return g.reshape(h, d // self.kernel, self.kernel).transpose(1, 2, 0).reshape(d, h)
        return g.reshape(d, h)


@dataclass
class LBIResult:
    """The last iterate, the accumulated v, the group priority and the support size per iteration."""

    u: np.ndarray
    v: np.ndarray
    priority: np.ndarray   # |v| per entry (norm of v's group): larger entered earlier
    path: list[int]        # support size (entries) after each iteration
    iterations: int


def lbi_path(a: np.ndarray, f: np.ndarray, lam: float = 20.0, delta: float = 1.0, iters: int = 2000,
             grouping: Grouping = Grouping(), stop_nnz: int | None = None) -> LBIResult:
    """Run LBI on A [n, D], F [n, H] until `iters` or the support reaches `stop_nnz` entries."""
    a, f = np.asarray(a, np.float64), np.asarray(f, np.float64)
    n = a.shape[0]
    shape = (a.shape[1], f.shape[1])
    lip = np.linalg.norm(a, 2) ** 2 / n
    tau = 1.0 / (delta * max(lip, 1e-300))
    g0 = grouping.to_groups(a.T @ f / n)
    mu = lam * tau * float(np.max(group_norms(g0))) / np.sqrt(g0.shape[1])
    v = np.zeros(shape)
    u = np.zeros(shape)
    path: list[int] = []
    for _ in range(iters):
        v += tau * (a.T @ (f - a @ u)) / n
        u = delta * grouping.from_groups(group_shrink(grouping.to_groups(v), mu), shape)
        path.append(int(np.count_nonzero(u)))
        if stop_nnz is not None and path[-1] >= stop_nnz:
            break
    gv = grouping.to_groups(v)
    prio = grouping.from_groups(np.repeat(group_norms(gv)[:, None], gv.shape[1], axis=1), shape)
    return LBIResult(u, v, prio, path, len(path))


def top_mask(priority: np.ndarray, keep: int, grouping: Grouping = Grouping()) -> np.ndarray:
    """A bool mask keeping the `keep` entries of highest priority, whole groups at a time (ties: index order)."""
    g = grouping.to_groups(priority)
    size = g.shape[1]
    order = np.argsort(-g[:, 0], kind="stable")
    chosen = np.zeros(g.shape[0], bool)
    chosen[order[:max(0, round(keep / size))]] = True
    return grouping.from_groups(np.repeat(chosen[:, None], size, axis=1), priority.shape)
