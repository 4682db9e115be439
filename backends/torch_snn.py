"""The torch lowering of the snn op family (merged into torch_backend's table), with surrogate gradients for the spike nonlinearity.

A spike is the Heaviside step H(u − θ) in the forward pass; its derivative, zero almost everywhere,
is replaced in the backward pass by a surrogate of x = u − θ (E. O. Neftci, H. Mostafa, F. Zenke,
"Surrogate gradient learning in spiking neural networks", IEEE Signal Process. Mag. 2019):
  fast-sigmoid  1 / (1 + k·|x|)²                     (Zenke & Ganguli, SuperSpike, 2018)
  arctan        (k/2) / (1 + (π·k·x/2)²)              (Fang et al., 2021)
with slope k. Which one is used is an explicit setting: `with surrogate("arctan", 2.0): ...`
(a context variable read when the forward runs; default fast-sigmoid, k = 25).

Forward values equal the interpreter's kernels: snn.lif loops over T with the same update, reset and
refractory rule; snn.maxpool follows the same leader rule (gradient to the passed unit); Poisson
encoding draws the same NumPy stream from the op's seed and passes the gradient straight through to the
rate (s = p + (spike − p) detached); ttfs encoding and first_spike decoding are not differentiable.
snn.nlif computes V at its readout (linear in its inputs, so differentiable) and fires the one-hot spike
of the interpreter; the spike carries amplitude 1 + (V − V̂)/V̂ (V̂ = V detached: 1 in the forward),
so the next layer's readout, linear in the amplitude, passes dV'/dV ≈ w straight through the spike time.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mpc.snn import kernels as K


@dataclass(frozen=True)
class Surrogate:
    """A surrogate derivative of the spike: its name and slope."""

    name: str = "fast-sigmoid"
    slope: float = 25.0

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """dH/dx replaced: the surrogate's value at x = u − θ."""
        k = self.slope
        if self.name == "arctan":
            return (k / 2) / (1 + (math.pi * k * x / 2) ** 2)
        return 1 / (1 + k * x.abs()) ** 2


SURROGATES = ("fast-sigmoid", "arctan")
DEFAULT = Surrogate()
_current: contextvars.ContextVar[Surrogate | None] = contextvars.ContextVar("mpc_surrogate", default=None)


@contextlib.contextmanager
def surrogate(name: str = "fast-sigmoid", slope: float = 25.0) -> Iterator[Surrogate]:
    """Inside the block, spikes in the torch lowering back-propagate through this surrogate."""
    if name not in SURROGATES or not slope > 0:
        raise ValueError(f"surrogate must be one of {SURROGATES} with slope > 0, got {name!r}, {slope!r}")
    token = _current.set(Surrogate(name, float(slope)))
    try:
        yield _current.get() or DEFAULT
    finally:
        _current.reset(token)


class SpikeFn(torch.autograd.Function):
    """Heaviside forward, surrogate backward."""

    @staticmethod
    def forward(ctx, x, sg):
        ctx.save_for_backward(x)
        ctx.sg = sg
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * ctx.sg.grad(x).to(g.dtype), None


def spike(x: torch.Tensor) -> torch.Tensor:
    """H(x) with the current surrogate gradient."""
    return SpikeFn.apply(x, _current.get() or DEFAULT)


def _per_channel(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """θ broadcast against one step [N, C, ...] of x [T, N, C, ...]."""
    if theta.numel() == 1:
        return theta.reshape(())
    return theta.reshape((-1,) + (1,) * (x.dim() - 3))


def _lif(a, x, theta, w_rec=None):
    th = _per_channel(theta, x)
    s = torch.zeros_like(x[0])   # the previous step's spikes (fed back through w_rec when recurrent)
    u = a.v0 * th * torch.ones_like(x[0])
    wait = torch.zeros_like(x[0], dtype=torch.int64)
    out = []
    for t in range(x.shape[0]):
        active = wait == 0
        u_new = a.beta * u + x[t] + (s @ w_rec if w_rec is not None else 0)
        s = spike(u_new - th) * active
        if a.reset.value == "soft":
            u_new = u_new - th * s
        else:
            u_new = u_new * (1 - s)
        u = torch.where(active, u_new, u)
        wait = torch.where(active, (s.detach() > 0).long() * a.refractory, wait - 1)
        out.append(s)
    return torch.stack(out)


def _encode(a, x):
    shape = (a.timesteps,) + tuple(x.shape)
    if a.mode.value == "constant":
        return x.unsqueeze(0).expand(shape)
    if a.mode.value == "poisson":
        p = x.clamp(0, 1)
        u = torch.from_numpy(np.random.default_rng(a.seed).random(shape)).to(x.dtype)
        s = (u < p).to(x.dtype)
        return p + (s - p).detach()
    y = K.snn_encode(x.detach().cpu().numpy(), "ttfs", a.timesteps, a.seed, a.dt, a.tau, a.window)
    return torch.from_numpy(y)


def _maxpool(a, x):
    (kh, kw), (sh, sw) = a.kernel, a.strides
    steps, lead, (h, w) = x.shape[0], x.shape[1:-2], x.shape[-2:]
    xb = x.reshape((steps, -1, 1, h, w))
    b = xb.shape[1]
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    unf = F.unfold(xb.reshape(steps * b, 1, h, w), (kh, kw), stride=(sh, sw)).reshape(steps, b, kh * kw, oh * ow)
    counts = torch.cumsum((unf.detach() != 0).long(), 0)
    leader = torch.zeros((b, 1, oh * ow), dtype=torch.int64)
    out = []
    for t in range(steps):
        c = counts[t]
        best, cand = c.max(1, keepdim=True)   # the first unit at the highest count
        lead_count = c.gather(1, leader)
        leader = torch.where(best > lead_count, cand, leader)
        out.append(unf[t].gather(1, leader).reshape(b, oh, ow))
    return torch.stack(out).reshape((steps,) + tuple(lead) + (oh, ow))


def _nlif(a, x, bias=None):
    sw = K.window_steps(a.dt, a.window)
    e = a.layer * sw
    decay = math.exp(-a.dt / a.tau)
    kc = K.kernel_constant(a.tau, a.window)
    ks = torch.arange(e + 1, dtype=x.dtype)
    phi = (1 - decay ** (e - ks)).reshape((-1,) + (1,) * (x.dim() - 1))
    v = kc * (x[:e + 1] * phi).sum(0)
    if bias is not None:
        v = v + bias.reshape((-1,) + (1,) * (x.dim() - 3))
    s = torch.from_numpy(K.snn_nlif(x.detach().cpu().numpy(), None if bias is None else bias.detach().cpu().numpy(),
                                    a.dt, a.tau, a.window, a.layer))
    vd = v.detach()
    amp = 1 + (v - vd) / torch.where(vd > 0, vd, torch.ones_like(vd))
    return s * amp


def _decode(a, x):
    steps = x.shape[0]
    mode = a.mode.value
    if mode == "count":
        return x.sum(0)
    if mode == "rate":
        return x.sum(0) / steps
    if mode == "membrane":
        w = a.beta ** torch.arange(steps - 1, -1, -1, dtype=x.dtype)
        return torch.tensordot(w, x, 1) / steps
    if mode == "first_spike":
        y = K.snn_decode(x.detach().cpu().numpy(), mode, a.beta, a.dt, a.tau, a.window, a.readout)
        return torch.from_numpy(y)
    fired = (x.detach() != 0).long()
    first = ((torch.cumsum(fired, 0) == 1) & (fired == 1)).to(x.dtype)
    ks = torch.arange(steps, dtype=torch.float64)
    gap = (a.readout - ks).clamp(min=0)
    phi = (K.kernel_constant(a.tau, a.window) * -torch.expm1(-gap * a.dt / a.tau) * (ks <= a.readout)).to(x.dtype)
    return (first * x * phi.reshape((-1,) + (1,) * (x.dim() - 1))).sum(0)


SNN_LOWERINGS = {"snn.encode": _encode, "snn.lif": _lif, "snn.maxpool": _maxpool, "snn.nlif": _nlif,
                 "snn.decode": _decode}
