"""`mpc finetune`: MP-aware fine-tuning in torch (exact derivatives of the MP threshold).

The calibrated graph is trained as the module of the torch lowering (`mpc.backends.torch_backend`);
every MP op goes through `mpc.mp.autograd.MPDotFunction`, whose forward and backward are the fused kernels
(∂α/∂p_i = 1/k on the active set, ∂α/∂γ = −1/k), so training memory stays O(B·H) per layer.
Weights, gains and biases train (γ too with --learn-gamma); at the end gains are snapped back to
shift-add constants (γ to the γD/2 = 2^k grid) and one more epoch trains the rest with them frozen.
A seeded fraction of the data (`val_fraction`) is held out: after every epoch the model as it would be
written (a snapped copy) is scored on it, and the epoch with the best validation accuracy (among
equal ones, the lowest validation loss) is the one written back, so `epochs` is an upper bound. The
learning rate follows a cosine schedule from `lr` down to lr/20 over all steps (`schedule="constant"`
keeps it fixed).
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
    selected_epoch: int | None = None       # the epoch written back (None: no validation, the last)
    val_accuracy: float | None = None       # its validation accuracy
    val_indices: np.ndarray | None = None   # the held-out samples of `data`, sorted


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


def split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) sample indices, each sorted: a seeded random `val_fraction` of n held out."""
    n_val = round(n * val_fraction)
    if n_val == 0:
        return np.arange(n), np.zeros(0, np.int64)
    if n_val >= n:
        raise BadFlag(f"--val-fraction {val_fraction} leaves no training samples out of {n}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _accuracy(model, feeds, labels) -> tuple[float, float]:
    """Top-1 accuracy and mean cross entropy of the model on feeds (no gradients, in slices of 512)."""
    correct, loss = 0, 0.0
    with torch.no_grad():
        for s in range(0, labels.shape[0], 512):
            out = next(iter(model({k: v[s:s + 512] for k, v in feeds.items()}).values()))
            out = out.reshape(out.shape[0], -1)
            correct += int((out.argmax(1) == labels[s:s + 512]).sum())
            loss += float(F.cross_entropy(out, labels[s:s + 512], reduction="sum"))
    return correct / max(1, labels.shape[0]), loss / max(1, labels.shape[0])


def _snapped_score(model, val, gain_terms: int, float_gains: bool) -> tuple[float, float, dict]:
    """Validation accuracy and loss of the model as it would be written (gains snapped), and its
    unsnapped state."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    _snap(model, gain_terms, float_gains)
    acc, loss = _accuracy(model, *val)
    model.load_state_dict(state)
    return acc, loss, state


def _epoch(model, opt, feeds, labels, teacher, distill, batch, rng, bar, sched=None) -> tuple[float, float]:
    n = labels.shape[0]
    order = rng.permutation(n)
    total, correct = 0.0, 0
    for s in range(0, n, batch):
        idx = torch.from_numpy(_local(order[s:s + batch]))   # data parallel: this rank's part of the batch
        if idx.numel() == 0:
            continue
        logits = next(iter(model({k: v[idx] for k, v in feeds.items()}).values()))
        logits = logits.reshape(logits.shape[0], -1)
        loss = _loss(logits, labels[idx], None if teacher is None else teacher[idx], distill)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        total += float(loss.detach()) * len(idx) * _world()
        correct += int((logits.reshape(logits.shape[0], -1).argmax(1) == labels[idx]).sum())
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss.detach()):.4f}", acc=f"{correct / min(s + batch, n):.4f}")
    return total / n, correct * _world() / n


def _world() -> int:
    """Processes training together (1 unless a torch.distributed process group is up)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _local(idx: np.ndarray) -> np.ndarray:
    """This rank's share of a global batch: every world-th sample from its rank on. All ranks draw the
    same seeded order, so N ranks with DDP's averaged gradients take the steps one process takes on the
    whole batch; a last batch smaller than the world is skipped by every rank alike."""
    world = _world()
    if world == 1:
        return idx
    return idx[torch.distributed.get_rank()::world] if idx.size >= world else idx[:0]


def _parallel(model):
    """The module to run forward: DistributedDataParallel over `model` when a process group is up."""
    if _world() == 1:
        return model
    # a learnt γ is frozen in the last epoch: DDP must then expect parameters without gradients
    return torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=model.log_gamma.requires_grad)


def finetune(graph: Graph, data, epochs: int, lr: float, batch: int, learn_gamma: bool, gain_terms: int,
             float_gains: bool, seed: int, quiet: bool, teacher: np.ndarray | None = None,
             distill: float = 0.0, weight_decay: float = 0.0, progress: bool = False, val_fraction: float = 0.0,
             schedule: str = "constant") -> FinetuneResult:
    """Train `graph` (in place: new weights and attributes) on `data`; see the module docstring.

    With `teacher` (the source model's logits on `data`) the loss mixes cross entropy with the
    distillation term at weight `distill`.
    """
    _need_torch()
    if data.labels is None:
        raise BadInput(f"{data.source}: fine-tuning needs 'labels' in the data file")
    if epochs < 1 or batch < 1 or not lr > 0:
        raise BadFlag("--epochs and --batch-size must be >= 1 and --lr > 0")
    if schedule not in ("cosine", "constant"):
        raise BadFlag(f"--lr-schedule must be cosine or constant, got '{schedule}'")
    from mpc.backends.torch_backend import lower, write_back
    torch.manual_seed(seed)
    model = lower(graph, trainable=True, learn_gamma=learn_gamma)
    tr, va = split(data.labels.shape[0], val_fraction, seed)
    feeds = {k: torch.from_numpy(np.ascontiguousarray(v[tr])) for k, v in data.feeds.items()}
    labels = torch.from_numpy(data.labels[tr].astype(np.int64))
    val = ({k: torch.from_numpy(np.ascontiguousarray(v[va])) for k, v in data.feeds.items()},
           torch.from_numpy(data.labels[va].astype(np.int64)))
    rng = np.random.default_rng(seed)
    per_epoch = (labels.shape[0] + batch - 1) // batch
    bar = progress_bar(total=epochs * per_epoch, desc="finetune", quiet=quiet, progress=progress, mininterval=0.5)
    t0, history = time.perf_counter(), []
    teacher_t = None if teacher is None else torch.from_numpy(np.ascontiguousarray(teacher[tr], np.float32))
    opt, sched = _optimizer(model, set(), lr, weight_decay, schedule, epochs * per_epoch)
    net = _parallel(model)
    best = None   # (validation accuracy, -validation loss, epoch, unsnapped state)
    for e in range(epochs):
        if e == epochs - 1 and epochs > 1:   # last epoch: snapped gains (and γ) frozen
            _snap(model, gain_terms, float_gains)
            frozen = set(_gain_keys(model)) if not float_gains else set()
            model.log_gamma.requires_grad_(False)
            opt, sched = _optimizer(model, frozen, lr / 3, weight_decay, schedule, per_epoch)
        loss, acc = _epoch(net, opt, feeds, labels, teacher_t, distill, batch, rng, bar, sched)
        row = {"epoch": e + 1, "loss": round(loss, 6), "train accuracy": round(acc, 6)}
        if va.size:
            acc, vloss, state = _snapped_score(model, val, gain_terms, float_gains)
            row |= {"val accuracy": round(acc, 6), "val loss": round(vloss, 6)}
            if best is None or (acc, -vloss) > best[:2]:   # ties in accuracy go to the lower loss
                best = (acc, -vloss, e + 1, state)
        history.append(row)
    bar.close()
    if best is not None:
        model.load_state_dict(best[3])
        model.log_gamma.requires_grad_(learn_gamma)   # so that a learnt γ of an earlier epoch is snapped too
    if epochs == 1 or best is not None:
        _snap(model, gain_terms, float_gains)
    write_back(graph, model, gain_terms=gain_terms if not float_gains else 0)
    return FinetuneResult(epochs, time.perf_counter() - t0, history[-1]["loss"], history[-1]["train accuracy"],
                          history, best[2] if best else None, best[0] if best else None, va if va.size else None)


def _optimizer(model, frozen: set, lr: float, weight_decay: float, schedule: str, steps: int):
    """AdamW over the trainable parameters not in `frozen`, and its per-step schedule (None: constant)."""
    params = [p for k, p in model.params.items() if k not in frozen and p.requires_grad] if frozen else \
        [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if schedule == "constant":
        return opt, None
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps), eta_min=lr / 20)
