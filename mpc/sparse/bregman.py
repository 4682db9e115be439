"""LinBreg and AdaBreg: linearized Bregman optimizers for training-time sparsity, as torch optimizers.

Bungert, Roith, Tenbrinck and Burger, "A Bregman learning framework for sparse neural networks"
(JMLR 2022). With J(θ) = λ‖θ‖₁ (or the group norm λ Σ_g √|g|·‖θ_g‖) and δ > 0, both keep a dual
variable v per parameter and set θ = δ·shrink(v, λ): a parameter is exactly zero until its
accumulated (negative) gradient carries |v| past λ, so training starts sparse and adds weights only
where the loss asks for them.

- LinBreg:  v ← v − τ·g
- AdaBreg:  m ← β₁m + (1−β₁)g,  s ← β₂s + (1−β₂)g²,  v ← v − τ·m̂/(√ŝ + ε), m̂ = m/(1−β₁ᵗ), ŝ = s/(1−β₂ᵗ)

v starts at θ₀/δ + ∂J(θ₀) (λ·sign(θ₀), or λ√S·θ_g/‖θ_g‖ for a group), so the first shrink returns θ₀:
a sparse start (`sparse_init_`) or a pruned model stays as it is until gradients move it. λ = 0 in a
parameter group (biases, say) makes it plain gradient descent on δ·v. Groups: `group="rows"` takes
the slices along `row_dim` (an output neuron's weights), `"kernels"` the [kh, kw] kernels of a 4-D
conv weight; `"none"` single entries.
"""
from __future__ import annotations

import math

import torch

GROUPS = ("none", "rows", "kernels")


def _as_groups(t: torch.Tensor, group: str, row_dim: int) -> torch.Tensor:
    """t as a 2-D [G, S] view-copy whose rows are the groups."""
    if group == "rows" and t.dim() >= 2:
        return t.movedim(row_dim, 0).reshape(t.shape[row_dim], -1)
    if group == "kernels" and t.dim() == 4:
        return t.reshape(t.shape[0] * t.shape[1], -1)
    return t.reshape(-1, 1)


def _from_groups(g: torch.Tensor, like: torch.Tensor, group: str, row_dim: int) -> torch.Tensor:
    """The inverse of _as_groups."""
    if group == "rows" and like.dim() >= 2:
        moved = like.movedim(row_dim, 0).shape
        return g.reshape(moved).movedim(0, row_dim)
    return g.reshape(like.shape)


def shrink(v: torch.Tensor, lam: float, group: str = "none", row_dim: int = 0) -> torch.Tensor:
    """Soft threshold of v at lam (entries) or lam·√S (groups of size S)."""
    g = _as_groups(v, group, row_dim)
    if g.shape[1] == 1:
        out = torch.sign(g) * torch.clamp(g.abs() - lam, min=0.0)
    else:
        norms = g.norm(dim=1, keepdim=True)
        out = g * torch.clamp(1.0 - lam * math.sqrt(g.shape[1]) / norms.clamp_min(1e-30), min=0.0)
    return _from_groups(out, v, group, row_dim)


def subgradient(p: torch.Tensor, lam: float, group: str = "none", row_dim: int = 0) -> torch.Tensor:
    """An element of ∂J(p): lam·sign(p), or lam·√S·p_g/‖p_g‖ (0 for an all-zero group)."""
    g = _as_groups(p, group, row_dim)
    if g.shape[1] == 1:
        return lam * torch.sign(p)
    norms = g.norm(dim=1, keepdim=True)
    out = lam * math.sqrt(g.shape[1]) * g / norms.clamp_min(1e-30)
    return _from_groups(out, p, group, row_dim)


@torch.no_grad()
def sparse_init_(p: torch.Tensor, density: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero all but a random `density` fraction of p's entries, in place (the sparse start LinBreg wants)."""
    keep = torch.rand(p.shape, generator=generator) < density
    p.mul_(keep.to(p.dtype))
    return p


class _Bregman(torch.optim.Optimizer):
    """What LinBreg and AdaBreg share: the dual variable v, its initialisation and the shrink step."""

    def _check(self, lr: float, lam: float, delta: float, group: str) -> None:
        if not lr > 0 or lam < 0 or not delta > 0:
            raise ValueError(f"need lr > 0, lam >= 0, delta > 0; got lr={lr}, lam={lam}, delta={delta}")
        if group not in GROUPS:
            raise ValueError(f"group must be one of {GROUPS}, got {group!r}")

    def _dual(self, p: torch.Tensor, hp: dict) -> torch.Tensor:
        """v for p, made on first use from the current p."""
        state = self.state[p]
        if "v" not in state:
            state["v"] = p.detach() / hp["delta"] + subgradient(p.detach(), hp["lam"], hp["group"], hp["row_dim"])
        return state["v"]

    def _primal(self, p: torch.Tensor, v: torch.Tensor, hp: dict) -> None:
        p.copy_(hp["delta"] * shrink(v, hp["lam"], hp["group"], hp["row_dim"]))

    @torch.no_grad()
    def step(self, closure=None):
        """One Bregman step on every parameter that has a gradient; returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for hp in self.param_groups:
            for p in hp["params"]:
                if p.grad is None:
                    continue
                v = self._dual(p, hp)
                v.sub_(self._direction(p, p.grad, hp))
                self._primal(p, v, hp)
        return loss

    def _direction(self, p, g, hp):   # pragma: no cover - abstract
        raise NotImplementedError


class LinBreg(_Bregman):
    """Linearized Bregman iterations: v ← v − lr·g, θ = δ·shrink(v, λ)."""

    def __init__(self, params, lr: float = 1e-3, lam: float = 1e-3, delta: float = 1.0, group: str = "none",
                 row_dim: int = 0):
        self._check(lr, lam, delta, group)
        super().__init__(params, {"lr": lr, "lam": lam, "delta": delta, "group": group, "row_dim": row_dim})

    def _direction(self, p, g, hp):
        return hp["lr"] * g


class AdaBreg(_Bregman):
    """Adam-preconditioned Bregman iterations: v ← v − lr·m̂/(√ŝ + ε), θ = δ·shrink(v, λ)."""

    def __init__(self, params, lr: float = 1e-3, lam: float = 1e-3, delta: float = 1.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, group: str = "none",
                 row_dim: int = 0):
        self._check(lr, lam, delta, group)
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        super().__init__(params, {"lr": lr, "lam": lam, "delta": delta, "betas": betas, "eps": eps,
                                  "group": group, "row_dim": row_dim})

    def _direction(self, p, g, hp):
        state = self.state[p]
        if "step" not in state:
            state.update(step=0, m=torch.zeros_like(p), s=torch.zeros_like(p))
        b1, b2 = hp["betas"]
        state["step"] += 1
        t = state["step"]
        state["m"].mul_(b1).add_(g, alpha=1 - b1)
        state["s"].mul_(b2).addcmul_(g, g, value=1 - b2)
        m_hat = state["m"] / (1 - b1 ** t)
        s_hat = state["s"] / (1 - b2 ** t)
        return hp["lr"] * m_hat / (s_hat.sqrt() + hp["eps"])


def active_ratio(params) -> float:
    """Fraction of non-zero entries over the given tensors."""
    params = list(params)
    total = sum(p.numel() for p in params)
    return sum(int(torch.count_nonzero(p)) for p in params) / total if total else 0.0
