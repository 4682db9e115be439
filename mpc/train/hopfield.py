"""`mpc finetune --target hopfield`: train a layered Hopfield net by dual propagation, equilibrium
propagation or backprop, all on the same mean squared loss 1/2 |output - onehot(label)|^2, the same
Adam optimizer (written out here for the NumPy methods, torch.optim.Adam for backprop, same defaults),
the same seeded mini-batch order and the same initial weights, so their accuracies and times per epoch
compare directly.

dualprop and ep compute their updates in NumPy with mpc.hop.dyadic (no autograd, no derivative of f);
backprop trains the feedforward graph through the one torch lowering (mpc.backends.torch_backend).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from mpc.errors import BadFlag, BadInput
from mpc.hop import dyadic
from mpc.hop import kernels as HK
from mpc.hop.dyadic import HopNet
from mpc.progress import progress_bar

METHODS = ("dualprop", "ep", "backprop")


@dataclass
class HopTrainConfig:
    """Training settings shared by the three methods."""

    epochs: int = 10
    lr: float = 1e-3
    batch: int = 64
    beta: float = 0.5
    extra: int = 0           # dual propagation: extra bottom-up/top-down sweep pairs
    free_iter: int = 40      # EP: free-phase sweeps
    nudge_iter: int = 20     # EP: sweeps of each nudged phase
    damped: bool = True      # dual propagation at lambda != 1/2: damped Jacobi iterations (converge for skew W)
    seed: int = 0
    quiet: bool = True
    progress: bool = False


@dataclass
class HopTrainResult:
    """What training did: one history row per epoch (loss, train accuracy, seconds, test accuracy)."""

    method: str
    history: list[dict] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Total training wall time (evaluation excluded)."""
        return float(sum(r["seconds"] for r in self.history))


class Adam:
    """Adam (Kingma and Ba 2015) with torch.optim.Adam's defaults, for lists of NumPy arrays."""

    def __init__(self, params: list[np.ndarray], lr: float, b1=0.9, b2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps, self.t = lr, b1, b2, eps, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> list[np.ndarray]:
        """New parameters (the inputs are not modified)."""
        self.t += 1
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
            self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * g * g
            mhat = self.m[i] / (1 - self.b1 ** self.t)
            vhat = self.v[i] / (1 - self.b2 ** self.t)
            out.append(p - self.lr * mhat / (np.sqrt(vhat) + self.eps))
        return out


def one_hot(labels: np.ndarray, classes: int, dtype) -> np.ndarray:
    """[N, classes] one-hot targets; BadInput for a label outside 0..classes-1."""
    labels = np.asarray(labels).astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise BadInput(f"labels must be in 0..{classes - 1} for a model with {classes} outputs, "
                       f"got {labels.min()}..{labels.max()}")
    return np.eye(classes, dtype=dtype)[labels]


def batches(n: int, batch: int, rng: np.random.Generator):
    """Index arrays of one shuffled epoch."""
    order = rng.permutation(n)
    return [order[s:s + batch] for s in range(0, n, batch)]


def _check(method: str, net: HopNet, cfg: HopTrainConfig) -> None:
    if method not in METHODS:
        raise BadFlag(f"unknown --method '{method}' (expected one of: {', '.join(METHODS)})")
    if net.acts[-1] != "identity":
        raise BadInput(f"dyadic training needs a linear output layer, got '{net.acts[-1]}'")
    if method == "ep" and net.lam != 1.0:
        raise BadFlag(f"--method ep trains the symmetric net: it needs --lambda 1, got {net.lam:g}")
    if not 0 < cfg.beta < 2:
        raise BadFlag(f"--beta must be in (0, 2) (the output's s- divides by 2 - beta), got {cfg.beta:g}")


def _grads(method, net, x, y, cfg):
    if method == "ep":
        return dyadic.ep_grads(net, x, y, cfg.beta, cfg.free_iter, cfg.nudge_iter, keep_free=True)
    extra = -1 if net.lam != 0.5 and cfg.damped else cfg.extra
    return dyadic.dualprop_grads(net, x, y, cfg.beta, extra, keep_free=True, free_iter=cfg.free_iter)


def accuracy(net: HopNet, x: np.ndarray, labels: np.ndarray, max_iter: int = 100) -> float:
    """Top-1 accuracy of the free equilibrium's output (damped Jacobi iterations unless lambda is 1/2 or 1)."""
    if net.lam in (0.5, 1.0):
        out = dyadic.predict(net, x, max_iter)
    else:
        pairs, blocks = net.blocks()
        s, _, _ = HK.hop_relax_stats(x, net.theta0, np.concatenate(net.biases), blocks, net.sizes, net.acts,
                                     pairs, True, 1e-6, max_iter, dyadic.damping_for(net))
        out = HK.hop_split(s, net.sizes)[-1]
    return float((out.argmax(1) == labels).mean())


def _dyadic_batch(method, net, opt, x, y, labels, cfg, epoch) -> tuple[HopNet, float, int]:
    """One optimizer step; returns the new net, the batch's summed loss and its correct count."""
    with np.errstate(over="ignore", invalid="ignore"):
        grads, out = _grads(method, net, x, y, cfg)
    if not all(np.isfinite(g).all() for g in grads):
        raise BadInput(f"{method}: the relaxation diverged in epoch {epoch} (non-finite states): the "
                       f"lambda={net.lam:g} energy is unbounded for these weights; start from smaller "
                       "weights or lower --lr")
    net = net.with_params(opt.step(net.params(), grads))
    return net, 0.5 * float(((out - y) ** 2).sum()), int((out.argmax(1) == labels).sum())


def train_dyadic(method: str, net: HopNet, x, labels, cfg: HopTrainConfig, test=None) -> tuple[HopNet, HopTrainResult]:
    """Train `net` by dual propagation or EP; `test` = (x, labels) adds a test accuracy per epoch."""
    _check(method, net, cfg)
    y = one_hot(labels, net.sizes[-1], x.dtype)
    rng = np.random.default_rng(cfg.seed)
    opt, result = Adam(net.params(), cfg.lr), HopTrainResult(method)
    steps = cfg.epochs * ((len(x) + cfg.batch - 1) // cfg.batch)
    bar = progress_bar(total=steps, desc=method, quiet=cfg.quiet, progress=cfg.progress, mininterval=0.5)
    for e in range(cfg.epochs):
        t0, loss, correct = time.perf_counter(), 0.0, 0
        for idx in batches(len(x), cfg.batch, rng):
            net, batch_loss, batch_correct = _dyadic_batch(method, net, opt, x[idx], y[idx], labels[idx], cfg, e + 1)
            loss, correct = loss + batch_loss, correct + batch_correct
            bar.update(1)
        row = _row(e, loss, correct, len(x), time.perf_counter() - t0)
        if test is not None:
            row["test accuracy"] = round(accuracy(net, *test, max_iter=cfg.free_iter), 6)
        result.history.append(row)
    bar.close()
    return net, result


def _row(epoch: int, loss: float, correct: int, n: int, seconds: float) -> dict:
    """One history row (loss: mean over samples)."""
    return {"epoch": epoch + 1, "loss": round(loss / n, 6), "train accuracy": round(correct / n, 6),
            "seconds": round(seconds, 4)}


def _torch_epoch(model, opt, name, xt, yt, labels, cfg, rng) -> tuple[float, int]:
    """One backprop epoch; (summed loss, correct count)."""
    loss_sum, correct = 0.0, 0
    for idx in batches(len(labels), cfg.batch, rng):
        out = next(iter(model({name: xt[idx]}).values()))
        loss = 0.5 * ((out - yt[idx]) ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_sum += float(loss.detach()) * len(idx)
        correct += int((out.detach().argmax(1).numpy() == labels[idx]).sum())
    return loss_sum, correct


def train_backprop(graph, x, labels, cfg: HopTrainConfig, test=None) -> HopTrainResult:
    """Train a feedforward graph (in place: new weights) by backprop through the torch lowering."""
    import torch

    from mpc.backends.torch_backend import lower, write_back
    torch.manual_seed(cfg.seed)
    model = lower(graph, trainable=True)
    name = graph.inputs[0].name
    xt = torch.from_numpy(np.ascontiguousarray(x))
    yt = torch.from_numpy(one_hot(labels, graph.outputs[0].type.shape[-1], x.dtype))
    rng, result = np.random.default_rng(cfg.seed), HopTrainResult("backprop")
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    for e in range(cfg.epochs):
        t0 = time.perf_counter()
        loss, correct = _torch_epoch(model, opt, name, xt, yt, labels, cfg, rng)
        row = _row(e, loss, correct, len(x), time.perf_counter() - t0)
        if test is not None:
            with torch.no_grad():
                pred = next(iter(model({name: torch.from_numpy(test[0])}).values())).argmax(1).numpy()
            row["test accuracy"] = round(float((pred == test[1]).mean()), 6)
        result.history.append(row)
    write_back(graph, model)
    return result


RUNS = (("backprop", 0.5), ("dualprop", 0.5), ("ep", 1.0), ("dualprop", 0.0))


def compare(graph, train, test, cfg: HopTrainConfig, runs=RUNS) -> dict[str, tuple[HopTrainResult, HopNet | None]]:
    """Train copies of one feedforward graph by each (method, lambda) of `runs` from the same weights,
    batch order and optimizer; `train`/`test` are (x, labels). Keys are 'method@lambda'."""
    from mpc.hop.graphio import net_of, relax_op
    from mpc.ir import clone
    from mpc.passmanager import run_pipeline
    out = {}
    for method, lam in runs:
        g = clone(graph)
        if method == "backprop":
            out[f"{method}@{lam:g}"] = (train_backprop(g, *train, cfg, test=test), None)
            continue
        run_pipeline(g, f"canonicalize,lower-hopfield{{lam={lam!r}}},dce")
        net, result = train_dyadic(method, net_of(g, relax_op(g)), *train, cfg, test=test)
        out[f"{method}@{lam:g}"] = (result, net)
    return out
