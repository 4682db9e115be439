"""Forward Propagation Through Time (FPTT) and its BPTT baseline, for any torch module that steps through time.

FPTT (S. Kag, V. Saligrama, "Training recurrent neural networks via forward propagation through time",
ICML 2021; applied to spiking networks by B. Yin, F. Corradi, S. M. Bohté, Nature Machine Intelligence
2023) replaces one backward pass over the whole sequence by one update per time step (or per window of
`window` steps). The update at step t minimises the instantaneous loss plus a dynamic regulariser that
pulls the weights W toward a running average W̄ of the weights seen so far:

    ℓ_dyn(W) = ℓ_t(W) + (α/2) ‖W − W̄_t − g_{t−1} / (2α)‖²
    W_{t+1}  = optimizer step on ∇ℓ_dyn
    W̄_{t+1}  = ½ (W̄_t + W_{t+1}) − g_t / (2α)

with W̄_0 = W_0 and g_{−1} = 0. g_t is the gradient of the step-t loss. The paper evaluates the two
gradients at the newest weights (∇ℓ_{t−1}(W_t), ∇ℓ_t(W_{t+1})); to keep ONE backward per step, g_t here
is the gradient of ℓ_t at the weights the step ran with (W_t), which that backward gives anyway, and the
regulariser's own gradient α(W − W̄_t) − g_{t−1}/2 is added analytically. The recurrent state is detached
after every update (the graph is cut between steps), so training memory does not grow with T.

A stepping module has `init_state(batch) -> state` and `step(x_t, state) -> (output_t, state)`, where
state is a tuple of tensors. `loss_fn(output_t, target, t, steps)` gives the loss of step t (None: no
loss at that step).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


class FPTT:
    """The FPTT state of a set of parameters: the running average W̄ and the previous step's gradient."""

    def __init__(self, params: Iterable[torch.nn.Parameter], alpha: float = 0.5):
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.params = [p for p in params if p.requires_grad]
        self.alpha = float(alpha)
        self.avg = [p.detach().clone() for p in self.params]
        self.prev = [torch.zeros_like(p) for p in self.params]

    def update(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        """One FPTT update: backward of `loss` (ℓ_t), add the regulariser's gradient, step, then update W̄."""
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        grads = [p.grad.detach().clone() for p in self.params]
        for p, avg, prev in zip(self.params, self.avg, self.prev):
            p.grad.add_(self.alpha * (p.detach() - avg) - 0.5 * prev)
        optimizer.step()
        for p, avg, g in zip(self.params, self.avg, grads):
            avg.mul_(0.5).add_(0.5 * p.detach() - g / (2 * self.alpha))
        self.prev = grads


def _detach(state):
    return tuple(s.detach() for s in state)


def fptt_sequence(model, fptt: FPTT, optimizer, x: torch.Tensor, target, loss_fn: Callable,
                  window: int = 1, meter: SavedMemory | None = None) -> list:
    """Train on one batch of sequences x [N, T, F] with FPTT; returns the per-step outputs (detached)."""
    steps = x.shape[1]
    state, pending, outs = model.init_state(x.shape[0]), None, []
    for t in range(steps):
        out, state = model.step(x[:, t], state)
        outs.append(out.detach())
        step_loss = loss_fn(out, target, t, steps)
        if step_loss is not None:
            pending = step_loss if pending is None else pending + step_loss
        if pending is not None and ((t + 1) % window == 0 or t == steps - 1):
            fptt.update(optimizer, pending)
            state, pending = _detach(state), None   # cut the graph: memory independent of T
            if meter is not None:
                meter.backward_done()
    return outs


def bptt_sequence(model, optimizer, x: torch.Tensor, target, loss_fn: Callable,
                  meter: SavedMemory | None = None) -> list:
    """Train on one batch with backpropagation through time: the same per-step losses, one backward."""
    steps = x.shape[1]
    state, total, outs = model.init_state(x.shape[0]), None, []
    for t in range(steps):
        out, state = model.step(x[:, t], state)
        outs.append(out.detach())
        step_loss = loss_fn(out, target, t, steps)
        if step_loss is not None:
            total = step_loss if total is None else total + step_loss
    optimizer.zero_grad()
    if total is not None:
        total.backward()
        optimizer.step()
    if meter is not None:
        meter.backward_done()
    return outs


def weighted_ce(out: torch.Tensor, target: torch.Tensor, t: int, steps: int) -> torch.Tensor:
    """Cross-entropy at every step, weighted (t + 1) / T so late steps (which saw more input) count more."""
    return torch.nn.functional.cross_entropy(out, target) * ((t + 1) / steps)


class SavedMemory:
    """Peak bytes of the tensors autograd keeps for one backward (the activation memory that BPTT grows with T).

    Counted through torch.autograd.graph.saved_tensors_hooks: every tensor saved for backward adds its
    storage's bytes once (a storage saved by several ops, such as a weight used at every step, counts once);
    `backward_done()` starts a new window. Parameters and optimizer state are not included (they do not
    depend on T).
    """

    def __init__(self):
        self.current, self.peak, self.seen = 0, 0, set()

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        """The pack hook: count the tensor's storage if this window has not seen it."""
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in self.seen:
            self.seen.add(key)
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)
        return t

    def backward_done(self) -> None:
        """The graph was freed by a backward: start counting anew."""
        self.current, self.seen = 0, set()

    def hooks(self):
        """The context manager that counts saved tensors inside it."""
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)
