"""`mpc finetune`: MP-aware fine-tuning in torch (exact derivatives of the MP threshold).

The calibrated graph is run by a small torch interpreter (one function per op kind); every MP op
goes through `mpc.mp_torch.MPDotFunction`, whose forward and backward are the fused kernels
(∂α/∂p_i = 1/k on the active set, ∂α/∂γ = −1/k), so training memory stays O(B·H) per layer.
Weights, gains and biases train (γ too with --learn-gamma); at the end gains are snapped back to
shift-add constants (γ to the γD/2 = 2^k grid) and one more epoch trains the rest with them frozen.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from mpc.errors import BadFlag, BadInput, UnsupportedOp
from mpc.ir import Graph, Op, make_op, with_attrs
from mpc.ir.ops_mp import snap_shift_add
from mpc.progress import progress_bar

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - the CLI reports it
    torch = None

MP_KINDS = ("mp.dot", "mp.conv2d")


def _need_torch() -> None:
    if torch is None:
        raise BadInput("mpc finetune needs torch: pip install 'mpc[torch]'")


# -- torch kernels per op kind ---------------------------------------------------------------
def _mp_rows(x2d, w, gamma, c, gain, offset):
    from mpc.mp_torch import MPDotFunction
    y = MPDotFunction.apply((x2d * c).contiguous(), (w / c).contiguous(), gamma) * gain
    return y + offset if offset is not None else y


def _mp_dot(op, a, gamma):
    x, w, gain = a[:3]
    lead = x.shape[:-1]
    y = _mp_rows(x.reshape(-1, x.shape[-1]), w, gamma, op.attrs.c, gain, a[3] if len(a) > 3 else None)
    return y.reshape(*lead, w.shape[0])


def _mp_conv(op, a, gamma):
    x, w, gain = a[:3]
    at = op.attrs
    n, m = x.shape[0], w.shape[0]
    xp = F.pad(x, (at.pads[1], at.pads[3], at.pads[0], at.pads[2]))
    kh, kw = w.shape[2:]
    oh = (xp.shape[2] - (kh - 1) * at.dilations[0] - 1) // at.strides[0] + 1
    ow = (xp.shape[3] - (kw - 1) * at.dilations[1] - 1) // at.strides[1] + 1
    cols = F.unfold(xp, (kh, kw), dilation=at.dilations, stride=at.strides)       # (N, C*kh*kw, L)
    g, cg, mg = at.group, x.shape[1] // at.group, m // at.group
    cols = cols.reshape(n, g, cg * kh * kw, oh * ow).permute(1, 0, 3, 2).reshape(g, n * oh * ow, cg * kh * kw)
    off = a[3] if len(a) > 3 else None
    ys = [_mp_rows(cols[i], w[i * mg:(i + 1) * mg].reshape(mg, -1), gamma, at.c, gain[i * mg:(i + 1) * mg],
                   None if off is None else off[i * mg:(i + 1) * mg]) for i in range(g)]
    return torch.cat(ys, dim=1).reshape(n, oh, ow, m).permute(0, 3, 1, 2)


def _pool(op, x, fn):
    at = op.attrs
    if at.pads[:2] != at.pads[2:]:
        raise UnsupportedOp(op.kind, op.loc, "fine-tuning supports symmetric pooling pads only")
    return fn(x, at.kernel, at.strides, at.pads[:2], ceil_mode=at.ceil_mode)


def _conv(op, a):
    at = op.attrs
    x = F.pad(a[0], (at.pads[1], at.pads[3], at.pads[0], at.pads[2]))
    return F.conv2d(x, a[1], a[2] if len(a) > 2 else None, at.strides, 0, at.dilations, at.group)


TORCH_OPS = {
    "nn.add": lambda op, a: a[0] + a[1], "nn.sub": lambda op, a: a[0] - a[1],
    "nn.mul": lambda op, a: a[0] * a[1], "nn.div": lambda op, a: a[0] / a[1],
    "nn.relu": lambda op, a: torch.relu(a[0]), "nn.tanh": lambda op, a: torch.tanh(a[0]),
    "nn.sigmoid": lambda op, a: torch.sigmoid(a[0]),
    "nn.leaky_relu": lambda op, a: F.leaky_relu(a[0], op.attrs.alpha),
    "nn.softmax": lambda op, a: torch.softmax(a[0], op.attrs.axis),
    "nn.clip": lambda op, a: torch.clamp(a[0], op.attrs.min, op.attrs.max),
    "nn.identity": lambda op, a: a[0], "nn.dropout": lambda op, a: a[0],
    "nn.matmul": lambda op, a: torch.matmul(a[0], a[1]),
    "nn.conv2d": _conv,
    "nn.maxpool2d": lambda op, a: _pool(op, a[0], lambda x, k, s, p, ceil_mode: F.max_pool2d(
        x, k, s, p, op.attrs.dilations, ceil_mode=ceil_mode)),
    "nn.global_avgpool": lambda op, a: a[0].mean(dim=tuple(range(2, a[0].dim())), keepdim=True),
    "nn.flatten": lambda op, a: a[0].reshape(int(np.prod(a[0].shape[:op.attrs.axis % (a[0].dim() + 1)])), -1),
    "nn.reshape": lambda op, a: a[0].reshape([a[0].shape[i] if d == 0 else d for i, d in enumerate(op.attrs.shape)]),
    "nn.transpose": lambda op, a: a[0].permute(*op.attrs.perm),
    "nn.concat": lambda op, a: torch.cat(a, op.attrs.axis),
}


class TorchGraph(torch.nn.Module if torch is not None else object):
    """The graph as a torch module: weights become parameters, MP ops use the fused autograd."""

    def __init__(self, graph: Graph, learn_gamma: bool):
        super().__init__()
        self.graph = graph
        for op in graph.ops:
            if op.kind not in TORCH_OPS and op.kind not in MP_KINDS:
                raise UnsupportedOp(op.kind, op.loc, "mpc finetune has no torch kernel for this op kind")
        self.keys = {w: f"w{i}" for i, w in enumerate(graph.used_weights())}
        self.params = torch.nn.ParameterDict({k: torch.nn.Parameter(torch.tensor(np.array(graph.weights[w])))
                                              for w, k in self.keys.items()})
        mp_ops = [op for op in graph.ops if op.kind in MP_KINDS]
        self.log_gamma = torch.nn.Parameter(torch.tensor([math.log(op.attrs.gamma) for op in mp_ops],
                                                         dtype=torch.float64), requires_grad=learn_gamma)
        self.mp_index = {id(op): i for i, op in enumerate(mp_ops)}

    def forward(self, feeds: dict) -> list:
        """Outputs in graph order."""
        env = {id(v): feeds[v.name] for v in self.graph.inputs}
        for op in self.graph.ops:
            args = [self.params[self.keys[v.name]] if v.is_weight else env[id(v)] for v in op.operands]
            if op.kind in MP_KINDS:
                gamma = torch.exp(self.log_gamma[self.mp_index[id(op)]]).to(args[0].dtype)
                out = (_mp_dot if op.kind == "mp.dot" else _mp_conv)(op, args, gamma)
            else:
                out = TORCH_OPS[op.kind](op, args)
            env[id(op.result)] = out
        return [self.params[self.keys[v.name]] if v.is_weight else env[id(v)] for v in self.graph.outputs]


@dataclass
class FinetuneResult:
    """What fine-tuning did, for the report."""

    epochs: int
    seconds: float
    final_loss: float
    train_accuracy: float
    history: list[dict]


def _gain_keys(model: TorchGraph) -> list[str]:
    return [model.keys[op.operands[2].name] for op in model.graph.ops if op.kind in MP_KINDS]


def _snap(model: TorchGraph, gain_terms: int, float_gains: bool) -> None:
    """γ onto the γD/2 = 2^k grid, gains onto ≤ gain_terms signed powers of two (in place)."""
    with torch.no_grad():
        for op in model.graph.ops:
            if op.kind not in MP_KINDS:
                continue
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
        logits = model({k: v[idx] for k, v in feeds.items()})[0]
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
    torch.manual_seed(seed)
    model = TorchGraph(graph, learn_gamma)
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
    _write_back(graph, model, gain_terms if not float_gains else 0)
    return FinetuneResult(epochs, time.perf_counter() - t0, history[-1]["loss"], history[-1]["train accuracy"],
                          history)


def _write_back(graph: Graph, model: TorchGraph, gain_terms: int) -> None:
    """New weights `<name>.ft` and γ attributes from the trained module."""
    new_names = {}
    for w, k in model.keys.items():
        arr = model.params[k].detach().numpy().astype(graph.weights[w].dtype)
        new_names[w] = graph.add_weight(f"{w}.ft", arr)
    for i, op in enumerate(graph.ops):
        operands = [new_names[v.name] if v.is_weight else v for v in op.operands]
        attrs = op.attrs
        if op.kind in MP_KINDS:
            gamma = float(torch.exp(model.log_gamma[model.mp_index[id(op)]]))
            attrs = with_attrs(op.attrs, gamma=gamma, gain_terms=gain_terms)
        new: Op = make_op(graph, op.kind, operands, attrs, op.loc)
        new.results = op.results
        for r in op.results:
            r.producer = new
        graph.ops[i] = new
    graph.outputs = [new_names[v.name] if v.is_weight else v for v in graph.outputs]
    for w in list(graph.weights):
        if w not in graph.used_weights():
            graph.remove_weight(w)
