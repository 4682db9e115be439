"""Sparse fine-tuning with the Bregman optimizers (`mpc.optim.LinBreg` / `AdaBreg`) on the torch lowering.

Synapse weights (the weight operand of nn.matmul, nn.gemm, nn.conv2d, mp.dot, mp.conv2d) train with
J(θ) = λ‖θ‖₁, everything else (biases, MP offsets) with λ = 0; MP gains stay frozen, so their
shift-add form holds without snapping. A weight that is zero (pruned before) re-enters only when its
accumulated gradient crosses λ, so the active-parameter ratio is reported after every epoch. The
trained weights are written back as `<name>.breg`; the caller runs `fuse` to drop dead neurons.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mpc.errors import BadFlag, BadInput
from mpc.ir import Graph
from mpc.progress import progress_bar

SYNAPSES = ("nn.matmul", "nn.gemm", "nn.conv2d", "mp.dot", "mp.conv2d")
MP_KINDS = ("mp.dot", "mp.conv2d")


@dataclass
class BregmanResult:
    """What Bregman fine-tuning did, for the report."""

    epochs: int
    seconds: float
    history: list[dict]
    selected_epoch: int | None = None


def synapse_weights(graph: Graph) -> list[str]:
    """Names of the synapse weights (sparsified) in graph order."""
    names: dict[str, None] = {}
    for op in graph.ops:
        if op.kind in SYNAPSES and op.operands[1].is_weight:
            names.setdefault(op.operands[1].name)
    return list(names)


def _frozen(graph: Graph) -> set[str]:
    """MP gains: their shift-add form is a hardware constraint the optimizer would break."""
    return {op.operands[2].name for op in graph.ops if op.kind in MP_KINDS and op.operands[2].is_weight}


def make_optimizer(name: str, model, graph: Graph, lam: float, lr: float):
    """LinBreg or AdaBreg: λ on the synapse weights, 0 on the other trainable weights."""
    from mpc.optim import AdaBreg, LinBreg
    syn = set(synapse_weights(graph))
    sparse = [model.params[model.keys[w]] for w in model.keys if w in syn and model.keys[w] in model.params]
    dense = [model.params[model.keys[w]] for w in model.keys if w not in syn and model.keys[w] in model.params]
    groups = [{"params": sparse, "lam": lam}] + ([{"params": dense, "lam": 0.0}] if dense else [])
    if name == "linbreg":
        return LinBreg(groups, lr=lr, lam=lam)
    if name == "adabreg":
        return AdaBreg(groups, lr=lr, lam=lam)
    raise BadFlag(f"unknown Bregman optimizer '{name}' (expected linbreg or adabreg)")


def _tensors(data, idx: np.ndarray):
    """(feeds, labels) of the samples `idx` as torch tensors."""
    import torch
    feeds = {k: torch.from_numpy(np.ascontiguousarray(v[idx])) for k, v in data.feeds.items()}
    return feeds, torch.from_numpy(data.labels[idx].astype(np.int64))


def _check(data, epochs: int, batch: int, lr: float, lam: float, schedule: str) -> None:
    if data.labels is None:
        raise BadInput(f"{data.source}: fine-tuning needs 'labels' in the data file")
    if epochs < 1 or batch < 1 or not lr > 0 or lam < 0:
        raise BadFlag("--epochs and --batch-size must be >= 1, --lr > 0 and --lbi-lambda >= 0")
    if schedule not in ("cosine", "constant"):
        raise BadFlag(f"--lr-schedule must be cosine or constant, got '{schedule}'")


def finetune_bregman(graph: Graph, data, optimizer: str, lam: float, epochs: int, lr: float, batch: int,
                     seed: int = 0, quiet: bool = True, progress: bool = False, teacher: np.ndarray | None = None,
                     distill: float = 0.0, val_fraction: float = 0.0, schedule: str = "constant") -> BregmanResult:
    """Train `graph` in place with LinBreg/AdaBreg; history: loss, accuracy, active ratio per epoch.

    `teacher` (the source's logits on `data`) mixes distillation into the loss at weight `distill`;
    `schedule="cosine"` decays lr to lr/20 over all steps; with `val_fraction` > 0 a seeded part of
    the data is held out and the epoch with the best validation accuracy is written.
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - the CLI reports it
        raise BadInput("mpc finetune needs torch: pip install 'mpc[torch]'") from None
    _check(data, epochs, batch, lr, lam, schedule)
    from mpc.backends.torch_backend import lower, write_back
    from mpc.train.finetune import split
    torch.manual_seed(seed)
    frozen = _frozen(graph)
    model = lower(graph, trainable=[w for w in graph.used_weights() if w not in frozen])
    opt = make_optimizer(optimizer, model, graph, lam, lr)
    tr, va = split(data.labels.shape[0], val_fraction, seed)
    feeds, labels = _tensors(data, tr)
    teacher_t = None if teacher is None else torch.from_numpy(np.ascontiguousarray(teacher[tr], np.float32))
    per_epoch = -(-labels.shape[0] // batch)
    sched = None if schedule == "constant" else \
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * per_epoch, eta_min=lr / 20)
    bar = progress_bar(total=epochs * per_epoch, desc=optimizer, quiet=quiet, progress=progress)
    t0 = time.perf_counter()
    history, best = _train(model, opt, sched, (feeds, labels, teacher_t, distill), _tensors(data, va) if va.size
                           else None, epochs, batch, np.random.default_rng(seed), bar, synapse_weights(graph))
    bar.close()
    if best is not None:
        model.load_state_dict(best[2])
    write_back(graph, model, suffix="breg")
    return BregmanResult(epochs, time.perf_counter() - t0, history, best[1] if best else None)


def _train(model, opt, sched, train, val, epochs, batch, rng, bar, syn_names):
    """The epochs; returns the history and (val accuracy, epoch, state) of the best epoch (None without val)."""
    from mpc.optim import active_ratio
    from mpc.train.finetune import _accuracy, _epoch
    syn = [model.weight(w) for w in syn_names]
    feeds, labels, teacher, distill = train
    history, best = [], None
    for e in range(epochs):
        loss, acc = _epoch(model, opt, feeds, labels, teacher, distill, batch, rng, bar, sched)
        row = {"epoch": e + 1, "loss": round(loss, 6), "train accuracy": round(acc, 6),
               "active ratio": round(active_ratio(syn), 6)}
        if val is not None:
            row["val accuracy"] = round(_accuracy(model, *val)[0], 6)
            if best is None or row["val accuracy"] > best[0]:   # ties keep the earlier epoch
                best = (row["val accuracy"], e + 1, {k: v.detach().clone() for k, v in model.state_dict().items()})
        history.append(row)
    return history, best
