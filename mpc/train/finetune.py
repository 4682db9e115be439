"""`mpc finetune`: MP-aware fine-tuning in torch (exact derivatives of the MP threshold).

The calibrated graph is trained as the module of the torch lowering (`mpc.backends.torch_backend`);
every MP op goes through `mpc.mp.autograd.MPDotFunction`, whose forward and backward are the fused kernels
(∂α/∂p_i = 1/k on the active set, ∂α/∂γ = −1/k), so training memory stays O(B·H) per layer.
Weights, gains and biases train (γ too with --learn-gamma); at the end gains are snapped back to
shift-add constants (γ to the γD/2 = 2^k grid) and one more epoch trains the rest with them frozen.
This module holds only the training loop, the loss and the snapping; the lowering owns the op semantics.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from mpc.errors import BadFlag, BadInput
from mpc.ir import Graph
from mpc.ir.ops_mp import snap_shift_add
from mpc.progress import progress_bar

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - the CLI reports it
    torch = None



def _need_torch() -> None:
    if torch is None:
        raise BadInput("mpc finetune needs torch: pip install 'mpc[torch]'")


@dataclass
class FinetuneResult:
    """What fine-tuning did, for the report."""

    epochs: int
    seconds: float
    final_loss: float
    train_accuracy: float
    history: list[dict]


def _mp_ops(model) -> list:
    """The MP ops of the lowered graph (those with a γ in the module)."""
    return [op for op in model.ops if id(op) in model.mp_index]


def _gain_keys(model) -> list[str]:
    return [model.keys[op.operands[2].name] for op in _mp_ops(model)]


def _snap(model, gain_terms: int, float_gains: bool) -> None:
    """γ onto the γD/2 = 2^k grid, gains onto ≤ gain_terms signed powers of two (in place)."""
    with torch.no_grad():
        for op in _mp_ops(model):
            i = model.mp_index[id(op)]
            d = int(np.prod(op.operands[1].type.shape[1:]))
            gamma = float(torch.exp(model.log_gamma[i]))
            if model.log_gamma.requires_grad:
                gamma = 2.0 ** (round(math.log2(gamma * d / 2)) + 1) / d
                model.log_gamma[i] = math.log(gamma)
            if float_gains:
                continue
            p = model.params[model.keys[op.operands[2].name]]
            scale = gamma * d / 2
            p.copy_(torch.tensor([snap_shift_add(float(g) * scale, gain_terms)[0] / scale for g in p.tolist()],
                                 dtype=p.dtype))


def _loss(logits, labels, teacher, distill: float, temperature: float = 2.0):
    """Cross entropy, mixed with the KL divergence to the source model's logits when distilling."""
    ce = F.cross_entropy(logits, labels)
    if teacher is None or distill == 0:
        return ce
    kl = F.kl_div(F.log_softmax(logits / temperature, 1), F.log_softmax(teacher / temperature, 1),
                  log_target=True, reduction="batchmean") * temperature ** 2
    return (1 - distill) * ce + distill * kl


def _epoch(model, opt, feeds, labels, teacher, distill, batch, rng, bar) -> tuple[float, float]:
    n = labels.shape[0]
    order = rng.permutation(n)
    total, correct = 0.0, 0
    for s in range(0, n, batch):
        idx = torch.from_numpy(order[s:s + batch])
        logits = next(iter(model({k: v[idx] for k, v in feeds.items()}).values()))
        logits = logits.reshape(logits.shape[0], -1)
        loss = _loss(logits, labels[idx], None if teacher is None else teacher[idx], distill)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(idx)
        correct += int((logits.reshape(logits.shape[0], -1).argmax(1) == labels[idx]).sum())
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss.detach()):.4f}", acc=f"{correct / min(s + batch, n):.4f}")
    return total / n, correct / n


def finetune(graph: Graph, data, epochs: int, lr: float, batch: int, learn_gamma: bool, gain_terms: int,
             float_gains: bool, seed: int, quiet: bool, teacher: np.ndarray | None = None,
             distill: float = 0.0, weight_decay: float = 0.0, progress: bool = False) -> FinetuneResult:
    """Train `graph` (in place: new weights and attributes) on `data`; see the module docstring.

    With `teacher` (the source model's logits on `data`) the loss mixes cross entropy with the
    distillation term at weight `distill`.
    """
    _need_torch()
    if data.labels is None:
        raise BadInput(f"{data.source}: fine-tuning needs 'labels' in the data file")
    if epochs < 1 or batch < 1 or not lr > 0:
        raise BadFlag("--epochs and --batch-size must be >= 1 and --lr > 0")
    from mpc.backends.torch_backend import lower, write_back
    torch.manual_seed(seed)
    model = lower(graph, trainable=True, learn_gamma=learn_gamma)
    feeds = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in data.feeds.items()}
    labels = torch.from_numpy(data.labels.astype(np.int64))
    rng = np.random.default_rng(seed)
    steps = epochs * ((labels.shape[0] + batch - 1) // batch)
    bar = progress_bar(total=steps, desc="finetune", quiet=quiet, progress=progress, mininterval=0.5)
    t0, history = time.perf_counter(), []
    teacher_t = None if teacher is None else torch.from_numpy(np.ascontiguousarray(teacher, np.float32))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    for e in range(epochs):
        if e == epochs - 1 and epochs > 1:   # last epoch: snapped gains (and γ) frozen
            _snap(model, gain_terms, float_gains)
            frozen = set(_gain_keys(model)) if not float_gains else set()
            model.log_gamma.requires_grad_(False)
            opt = torch.optim.AdamW([p for k, p in model.params.items() if k not in frozen], lr=lr / 3,
                                    weight_decay=weight_decay)
        loss, acc = _epoch(model, opt, feeds, labels, teacher_t, distill, batch, rng, bar)
        history.append({"epoch": e + 1, "loss": round(loss, 6), "train accuracy": round(acc, 6)})
    bar.close()
    if epochs == 1:
        _snap(model, gain_terms, float_gains)
    write_back(graph, model, gain_terms=gain_terms if not float_gains else 0)
    return FinetuneResult(epochs, time.perf_counter() - t0, history[-1]["loss"], history[-1]["train accuracy"],
                          history)
