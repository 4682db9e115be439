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


def _epoch(model, opt, feeds, labels, batch: int, rng, bar) -> tuple[float, float]:
    import torch
    import torch.nn.functional as F
    n = labels.shape[0]
    order = rng.permutation(n)
    total, correct = 0.0, 0
    for s in range(0, n, batch):
        idx = torch.from_numpy(order[s:s + batch])
        logits = next(iter(model({k: v[idx] for k, v in feeds.items()}).values()))
        logits = logits.reshape(logits.shape[0], -1)
        loss = F.cross_entropy(logits, labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(idx)
        correct += int((logits.argmax(1) == labels[idx]).sum())
        bar.update(1)
    return total / n, correct / n


def finetune_bregman(graph: Graph, data, optimizer: str, lam: float, epochs: int, lr: float, batch: int,
                     seed: int = 0, quiet: bool = True, progress: bool = False) -> BregmanResult:
    """Train `graph` in place with LinBreg/AdaBreg; history: loss, accuracy, active ratio per epoch."""
    try:
        import torch
    except ImportError:  # pragma: no cover - the CLI reports it
        raise BadInput("mpc finetune needs torch: pip install 'mpc[torch]'") from None
    if data.labels is None:
        raise BadInput(f"{data.source}: fine-tuning needs 'labels' in the data file")
    if epochs < 1 or batch < 1 or not lr > 0 or lam < 0:
        raise BadFlag("--epochs and --batch-size must be >= 1, --lr > 0 and --lbi-lambda >= 0")
    from mpc.backends.torch_backend import lower, write_back
    from mpc.optim import active_ratio
    torch.manual_seed(seed)
    frozen = _frozen(graph)
    model = lower(graph, trainable=[w for w in graph.used_weights() if w not in frozen])
    opt = make_optimizer(optimizer, model, graph, lam, lr)
    syn = [model.weight(w) for w in synapse_weights(graph)]
    feeds = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in data.feeds.items()}
    labels = torch.from_numpy(data.labels.astype(np.int64))
    rng = np.random.default_rng(seed)
    bar = progress_bar(total=epochs * -(-labels.shape[0] // batch), desc=optimizer, quiet=quiet, progress=progress)
    t0, history = time.perf_counter(), []
    for e in range(epochs):
        loss, acc = _epoch(model, opt, feeds, labels, batch, rng, bar)
        history.append({"epoch": e + 1, "loss": round(loss, 6), "train accuracy": round(acc, 6),
                        "active ratio": round(active_ratio(syn), 6)})
    bar.close()
    write_back(graph, model, suffix="breg")
    return BregmanResult(epochs, time.perf_counter() - t0, history)
