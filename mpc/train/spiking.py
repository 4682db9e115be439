"""`mpc finetune --target lif`: surrogate-gradient training of a converted spiking network.

The lowered graph (every snn op through mpc.backends.torch_snn) is unrolled over its T steps and trained
with back-propagation through time on the training data: synaptic weights, biases and the LIF
thresholds θ (weights of snn.lif) all train; the loss is the one of MP fine-tuning (cross entropy,
mixed with distillation from the source's logits). θ is kept >= 1e-3 of its initial value after
every step (a non-positive threshold would make every step a spike). The trained values return to the
graph as new weights `<name>.ft` through the torch lowering's write_back.

`optimizer="linbreg"|"adabreg"` trains with a Bregman optimizer instead of AdamW (mpc.train.bregman's
parameter groups: λ on the synapse weights, 0 on biases and thresholds), so a pruned synapse stays
zero until its accumulated gradient crosses λ; the history then reports the active-weight ratio.
"""
from __future__ import annotations

import time

import numpy as np

from mpc.errors import BadFlag, BadInput
from mpc.ir import Graph
from mpc.progress import progress_bar
from mpc.train.finetune import FinetuneResult, _epoch, _need_torch


def _theta_keys(model) -> list[str]:
    return sorted({model.keys[op.operands[1].name] for op in model.ops if op.kind == "snn.lif"})


class _ClampingOptimizer:
    """An optimizer whose step keeps every threshold above a floor."""

    def __init__(self, opt, params, floors):
        self.opt, self.params, self.floors = opt, params, floors

    def zero_grad(self):
        self.opt.zero_grad()

    def step(self):
        import torch
        self.opt.step()
        with torch.no_grad():
            for p, f in zip(self.params, self.floors):
                p.copy_(torch.maximum(p, f))


def finetune_snn(graph: Graph, data, epochs: int, lr: float, batch: int, seed: int, quiet: bool,
                 teacher: np.ndarray | None = None, distill: float = 0.0, weight_decay: float = 0.0,
                 progress: bool = False, surrogate_name: str = "fast-sigmoid", slope: float = 25.0,
                 optimizer: str = "adamw", lam: float = 0.0) -> FinetuneResult:
    """Train the spiking `graph` in place (new weights `.ft`) on labelled `data`; see the module docstring."""
    _need_torch()
    import torch

    from mpc.backends.torch_backend import lower, write_back
    from mpc.backends.torch_snn import surrogate
    if data.labels is None:
        raise BadInput(f"{data.source}: fine-tuning needs 'labels' in the data file")
    if epochs < 1 or batch < 1 or not lr > 0:
        raise BadFlag("--epochs and --batch-size must be >= 1 and --lr > 0")
    torch.manual_seed(seed)
    model = lower(graph, trainable=True)
    thetas = [model.params[k] for k in _theta_keys(model)]
    floors = [1e-3 * p.detach().abs().clone() for p in thetas]
    opt = _ClampingOptimizer(_inner_optimizer(model, graph, optimizer, lr, weight_decay, lam), thetas, floors)
    syn = _synapses(model, graph) if optimizer != "adamw" else None
    feeds = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in data.feeds.items()}
    labels = torch.from_numpy(data.labels.astype(np.int64))
    teacher_t = None if teacher is None else torch.from_numpy(np.ascontiguousarray(teacher, np.float32))
    rng = np.random.default_rng(seed)
    bar = progress_bar(total=epochs * ((labels.shape[0] + batch - 1) // batch), desc="finetune", quiet=quiet,
                       progress=progress, mininterval=0.5)
    t0, history = time.perf_counter(), []
    with surrogate(surrogate_name, slope):
        for e in range(epochs):
            loss, acc = _epoch(model, opt, feeds, labels, teacher_t, distill, batch, rng, bar)
            history.append({"epoch": e + 1, "loss": round(loss, 6), "train accuracy": round(acc, 6)}
                           | ({"active ratio": round(_active(syn), 6)} if syn is not None else {}))
    bar.close()
    write_back(graph, model)
    return FinetuneResult(epochs, time.perf_counter() - t0, history[-1]["loss"], history[-1]["train accuracy"],
                          history)


def _inner_optimizer(model, graph: Graph, optimizer: str, lr: float, weight_decay: float, lam: float):
    """AdamW over every trainable parameter, or LinBreg/AdaBreg with λ on the synapse weights only."""
    import torch
    if optimizer == "adamw":
        return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    if weight_decay:
        raise BadFlag("--weight-decay applies to --optimizer adamw only (the Bregman optimizers use --lbi-lambda)")
    from mpc.train.bregman import make_optimizer
    return make_optimizer(optimizer, model, graph, lam, lr)


def _synapses(model, graph: Graph) -> list:
    from mpc.train.bregman import synapse_weights
    return [model.weight(w) for w in synapse_weights(graph)]


def _active(params) -> float:
    from mpc.optim import active_ratio
    return active_ratio(params)
