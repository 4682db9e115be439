"""The torch lowering: an IR graph as a `torch.nn.Module`, the one module every training method trains.

`lower(graph)` builds a `LoweredGraph` whose forward runs the ops through a table of per-kind torch
functions with the semantics of the interpreter's reference kernels (ONNX layouts, asymmetric pads,
ceil-mode overhangs, time-major leading dims folded into the batch). Weights become parameters or
buffers (the `trainable` option); every MP op goes through `mpc.mp.autograd.MPDotFunction` (exact derivatives
of the MP threshold) with γ held as one learnable log γ per op. `write_back(graph, module)` returns the
trained values to the graph as new weights `<name>.ft` (weights are immutable) and γ attributes.

This module imports torch at import time; only torch users import it (`mpc convert` never does).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from mpc.errors import UnsupportedOp
from mpc.ir import Graph, make_op, with_attrs
from mpc.kernels_np import pool_out_size

MP_KINDS = ("mp.dot", "mp.conv2d")


# -- helpers ------------------------------------------------------------------------------
def _folded(fn: Callable) -> Callable:
    """fn on [N,C,H,W] also taking [..., N, C, H, W]: leading (time-major) dims join the batch."""
    def run(a, x, *rest):
        if x.dim() == 4:
            return fn(a, x, *rest)
        lead = x.shape[:-3]
        y = fn(a, x.reshape((math.prod(lead),) + tuple(x.shape[-3:])), *rest)
        return y.reshape(tuple(lead) + tuple(y.shape[1:]))
    return run


def _div(x, y):
    # ONNX integer Div truncates toward zero; torch's `/` would promote to float
    return x / y if x.is_floating_point() else torch.div(x, y, rounding_mode="trunc")


def _pad(x, pads, value=0.0):
    """Pad H and W of an NCHW tensor by ONNX pads [top, left, bottom, right]."""
    if not any(pads):
        return x
    return F.pad(x, (pads[1], pads[3], pads[0], pads[2]), value=value)


def _window_pads(x, a, k) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """Explicit pads plus the ceil-mode overhang (as the reference kernels pad), and the output size."""
    out = [pool_out_size(x.shape[2 + i], k[i], a.strides[i], a.pads[i], a.pads[i + 2], a.dilations[i],
                         a.ceil_mode) for i in range(2)]
    extra = [max(0, (out[i] - 1) * a.strides[i] + (k[i] - 1) * a.dilations[i] + 1
                 - (x.shape[2 + i] + a.pads[i] + a.pads[i + 2])) for i in range(2)]
    return (a.pads[0], a.pads[1], a.pads[2] + extra[0], a.pads[3] + extra[1]), tuple(out)


def _window_sum(x, k, a, out):
    """Sum over each (dilated) window of an already padded NCHW tensor."""
    n, c = x.shape[:2]
    cols = F.unfold(x, tuple(k), dilation=tuple(a.dilations), stride=tuple(a.strides))
    return cols.reshape(n, c, k[0] * k[1], out[0], out[1]).sum(2)


def _torch_dtype(dtype) -> torch.dtype:
    return getattr(torch, np.dtype(dtype.numpy).name)


# -- nn lowerings: fn(attrs, *tensors) ----------------------------------------------------
def _conv(a, x, w, b=None):
    return F.conv2d(_pad(x, a.pads), w, b, tuple(a.strides), 0, tuple(a.dilations), a.group)


def _maxpool(a, x):
    pads, _ = _window_pads(x, a, a.kernel)
    return F.max_pool2d(_pad(x, pads, -math.inf), tuple(a.kernel), tuple(a.strides), 0, tuple(a.dilations))


def _avgpool(a, x):
    pads, out = _window_pads(x, a, a.kernel)
    total = _window_sum(_pad(x, pads), a.kernel, a, out)
    ones = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype, device=x.device)
    if a.count_include_pad:   # explicit pads count, the ceil-mode overhang does not
        ones = _pad(ones, a.pads, 1.0)
        pads = tuple(p - q for p, q in zip(pads, a.pads))
    return total / _window_sum(_pad(ones, pads), a.kernel, a, out)


def _gemm(a, x, w, c=None):
    y = (x.T if a.trans_a else x) @ (w.T if a.trans_b else w)
    if a.alpha != 1.0:
        y = y * a.alpha
    if c is not None:
        y = y + (c * a.beta if a.beta != 1.0 else c)
    return y


def _batchnorm(a, x, scale, bias, mean, var):
    shape = (1, -1) + (1,) * (x.dim() - 2)
    inv = scale / torch.sqrt(var + a.epsilon)
    return (x - mean.reshape(shape)) * inv.reshape(shape) + bias.reshape(shape)


def _flatten(a, x):
    ax = a.axis + x.dim() if a.axis < 0 else a.axis
    return x.reshape(math.prod(x.shape[:ax]), math.prod(x.shape[ax:]))


def _reshape(a, x):
    return x.reshape([x.shape[i] if d == 0 else d for i, d in enumerate(a.shape)])


def _squeeze(a, x):
    axes = {ax % x.dim() for ax in a.axes}
    return x.reshape([d for i, d in enumerate(x.shape) if i not in axes])


def _unsqueeze(a, x):
    rank = x.dim() + len(a.axes)
    dims = list(x.shape)
    for ax in sorted(ax % rank for ax in a.axes):
        dims.insert(ax, 1)
    return x.reshape(dims)


LOWERINGS: dict[str, Callable] = {
    "nn.add": lambda a, x, y: x + y, "nn.sub": lambda a, x, y: x - y,
    "nn.mul": lambda a, x, y: x * y, "nn.div": lambda a, x, y: _div(x, y),
    "nn.relu": lambda a, x: torch.relu(x), "nn.tanh": lambda a, x: torch.tanh(x),
    "nn.sigmoid": lambda a, x: torch.sigmoid(x),
    "nn.leaky_relu": lambda a, x: F.leaky_relu(x, a.alpha),
    "nn.softmax": lambda a, x: torch.softmax(x, a.axis),
    "nn.clip": lambda a, x: torch.clamp(x, a.min, a.max),
    "nn.identity": lambda a, x: x, "nn.dropout": lambda a, x: x,
    "nn.cast": lambda a, x: x.to(_torch_dtype(a.to)),
    "nn.matmul": lambda a, x, w: torch.matmul(x, w),
    "nn.gemm": _gemm,
    "nn.conv2d": _folded(_conv),
    "nn.maxpool2d": _folded(_maxpool),
    "nn.avgpool2d": _folded(_avgpool),
    "nn.global_avgpool": lambda a, x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True),
    "nn.batchnorm": _batchnorm,
    "nn.flatten": _flatten,
    "nn.reshape": _reshape,
    "nn.transpose": lambda a, x: x.permute(*a.perm),
    "nn.concat": lambda a, *xs: torch.cat(xs, a.axis),
    "nn.squeeze": _squeeze,
    "nn.unsqueeze": _unsqueeze,
}


# -- mp lowerings: fn(attrs, gamma, *tensors), gamma a 0-d tensor -------------------------
def _mp_rows(x2d, w, gamma, c, gain, offset):
    from mpc.mp.autograd import MPDotFunction
    y = MPDotFunction.apply((x2d * c).contiguous(), (w / c).contiguous(), gamma) * gain
    return y + offset if offset is not None else y


def _mp_dot(a, gamma, x, w, gain, offset=None):
    lead = x.shape[:-1]
    y = _mp_rows(x.reshape(-1, x.shape[-1]), w, gamma, a.c, gain, offset)
    return y.reshape(*lead, w.shape[0])


def _mp_conv(a, x, gamma, w, gain, offset=None):
    n, m = x.shape[0], w.shape[0]
    kh, kw = w.shape[2:]
    xp = _pad(x, a.pads)
    oh = (xp.shape[2] - (kh - 1) * a.dilations[0] - 1) // a.strides[0] + 1
    ow = (xp.shape[3] - (kw - 1) * a.dilations[1] - 1) // a.strides[1] + 1
    cols = F.unfold(xp, (kh, kw), dilation=tuple(a.dilations), stride=tuple(a.strides))   # (N, C*kh*kw, L)
    g, cg, mg = a.group, x.shape[1] // a.group, m // a.group
    cols = cols.reshape(n, g, cg * kh * kw, oh * ow).permute(1, 0, 3, 2).reshape(g, n * oh * ow, cg * kh * kw)
    ys = [_mp_rows(cols[i], w[i * mg:(i + 1) * mg].reshape(mg, -1), gamma, a.c, gain[i * mg:(i + 1) * mg],
                   None if offset is None else offset[i * mg:(i + 1) * mg]) for i in range(g)]
    return torch.cat(ys, dim=1).reshape(n, oh, ow, m).permute(0, 3, 1, 2)


_mp_conv_folded = _folded(_mp_conv)   # folds on x, which comes first in _mp_conv's signature

MP_LOWERINGS: dict[str, Callable] = {
    "mp.dot": _mp_dot,
    "mp.conv2d": lambda a, gamma, x, *rest: _mp_conv_folded(a, x, gamma, *rest),
}


def lowered_kinds() -> list[str]:
    """Every op kind the torch lowering supports, sorted."""
    return sorted(set(LOWERINGS) | set(MP_LOWERINGS))


# -- the module ---------------------------------------------------------------------------
class LoweredGraph(torch.nn.Module):
    """A graph as a torch module: forward(feeds) -> {output name: tensor}."""

    def __init__(self, graph: Graph, trainable: bool | Collection[str] = True, learn_gamma: bool = False):
        super().__init__()
        for op in graph.ops:
            if op.kind not in LOWERINGS and op.kind not in MP_LOWERINGS:
                raise UnsupportedOp(op.kind, op.loc, "the torch lowering has no function for this op kind")
        self.graph = graph
        # a snapshot: write_back replaces the graph's ops and outputs, this module keeps running
        self.ops, self.inputs, self.outputs = list(graph.ops), list(graph.inputs), list(graph.outputs)
        self.keys = {w: f"w{i}" for i, w in enumerate(graph.used_weights())}
        self.params = torch.nn.ParameterDict()
        self.consts = torch.nn.Module()
        for w, key in self.keys.items():
            t = torch.from_numpy(np.array(graph.weights[w]))
            if _is_trainable(w, t, trainable):
                self.params[key] = torch.nn.Parameter(t)
            else:
                self.consts.register_buffer(key, t)
        mp_ops = [op for op in graph.ops if op.kind in MP_KINDS]
        # log γ keeps γ > 0 under gradient steps
        self.log_gamma = torch.nn.Parameter(torch.tensor([math.log(op.attrs.gamma) for op in mp_ops],
                                                         dtype=torch.float64), requires_grad=learn_gamma)
        self.mp_index = {id(op): i for i, op in enumerate(mp_ops)}

    def weight(self, name: str) -> torch.Tensor:
        """The tensor (parameter or buffer) that holds weight `name`."""
        key = self.keys[name]
        return self.params[key] if key in self.params else getattr(self.consts, key)

    def gamma(self, op) -> torch.Tensor:
        """γ of an MP op, a 0-d float64 tensor."""
        return torch.exp(self.log_gamma[self.mp_index[id(op)]])

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Run on inputs given as one dict, positionally in graph order, or by keyword; outputs by name."""
        feeds = _feeds(self.inputs, args, kwargs)
        env = {id(v): feeds[v.name] for v in self.inputs}
        for op in self.ops:
            xs = [self.weight(v.name) if v.is_weight else env[id(v)] for v in op.operands]
            if op.kind in MP_KINDS:
                out = MP_LOWERINGS[op.kind](op.attrs, self.gamma(op).to(xs[0].dtype), *xs)
            else:
                out = LOWERINGS[op.kind](op.attrs, *xs)
            for r, t in zip(op.results, out if isinstance(out, tuple) else (out,)):
                env[id(r)] = t
        return {v.name: self.weight(v.name) if v.is_weight else env[id(v)] for v in self.outputs}


def _is_trainable(name: str, t: torch.Tensor, trainable) -> bool:
    if not t.is_floating_point():   # integer / fixed-point storage has no gradient
        return False
    return trainable if isinstance(trainable, bool) else name in trainable


def _feeds(inputs: list, args, kwargs) -> dict[str, torch.Tensor]:
    """Inputs by name from forward's arguments; floats are cast to the declared dtype (as the interpreter)."""
    if len(args) == 1 and isinstance(args[0], Mapping) and not kwargs:
        given = dict(args[0])
    else:
        given = {v.name: a for v, a in zip(inputs, args)} | dict(kwargs)
    feeds = {}
    for v in inputs:
        if v.name not in given:
            raise TypeError(f"missing input '{v.name}'")
        t = torch.as_tensor(given[v.name])
        dtype = _torch_dtype(v.type.dtype)
        feeds[v.name] = t.to(dtype) if t.is_floating_point() and t.dtype != dtype else t
    return feeds


def lower(graph: Graph, trainable: bool | Collection[str] = True, learn_gamma: bool = False) -> LoweredGraph:
    """The graph as a torch module; `trainable`: all weights (True), none, or those named; γ with learn_gamma."""
    return LoweredGraph(graph, trainable, learn_gamma)


def write_back(graph: Graph, module: LoweredGraph, suffix: str = "ft", gain_terms: int | None = None) -> None:
    """Trained parameters into `graph` as new weights `<name>.<suffix>`, γ into the MP ops' attributes.

    Buffers (untrained weights) keep their names; `gain_terms`, when given, is set on every MP op.
    Weights no op uses any more are dropped.
    """
    if module.graph is not graph or graph.ops != module.ops:   # also refuses a second write-back
        raise ValueError("write_back: the module was not lowered from this graph, or the graph changed since")
    new_names = {}
    for w, key in module.keys.items():
        if key in module.params:
            arr = module.params[key].detach().cpu().numpy().astype(graph.weights[w].dtype)
            new_names[w] = graph.add_weight(f"{w}.{suffix}", arr)
    for i, op in enumerate(graph.ops):
        operands = [new_names.get(v.name, v) if v.is_weight else v for v in op.operands]
        attrs = _trained_attrs(op, module, gain_terms) if op.kind in MP_KINDS else op.attrs
        new = make_op(graph, op.kind, operands, attrs, op.loc)
        new.results = op.results
        for r in op.results:
            r.producer = new
        graph.ops[i] = new
    graph.outputs = [new_names.get(v.name, v) if v.is_weight else v for v in graph.outputs]
    used = set(graph.used_weights())
    for w in list(graph.weights):
        if w not in used:
            graph.remove_weight(w)


def _trained_attrs(op, module: LoweredGraph, gain_terms: int | None):
    """An MP op's attributes with the module's γ (and gain_terms when given)."""
    changes = {"gamma": float(module.gamma(op).detach())}
    if gain_terms is not None:
        changes["gain_terms"] = gain_terms
    return with_attrs(op.attrs, **changes)


# -- tensor, elementwise, logic and reduction ops: lowerings in backends/torch_tensor.py
from mpc.backends.torch_tensor import LOWERINGS as _TENSOR_LOWERINGS

LOWERINGS.update(_TENSOR_LOWERINGS)

# the spatial, normalization and activation ops (mpc.ir.ops_nn_spatial) lower through their own table
from mpc.backends.torch_spatial import LOWERINGS as _SPATIAL_LOWERINGS

LOWERINGS.update(_SPATIAL_LOWERINGS)

# -- hop lowerings: the relaxation of mpc.hop.kernels, written with torch ops ------------------------
_HOP_ACTS = {"identity": lambda u: u, "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


def _hop_step(states, blocks, pairs, c, acts, jacobi, damping):
    """One Gauss-Seidel sweep or Jacobi iteration, damped as in mpc.hop.kernels; (new states, largest change)."""
    new = list(states)
    for k in range(len(states)):
        src = states if jacobi else new
        u = c[k] + sum((src[j] @ b.T for (d, j), b in zip(pairs, blocks) if d == k), torch.zeros_like(c[k]))
        new[k] = _HOP_ACTS[acts[k]](u if damping == 1.0 else (1 - damping) * states[k] + damping * u)
    return new, max(float((n - o).abs().max()) if n.numel() else 0.0 for n, o in zip(new, states))


def _hop_relax(a, x, theta0, bias, *blocks):
    from mpc.ir.ops_hop import Schedule, couplings
    pairs, acts, jacobi = couplings(a), [f.value for f in a.acts], a.schedule is Schedule.JACOBI
    c = [b.expand(x.shape[0], -1) for b in torch.split(bias, list(a.sizes))]
    c[0] = x @ theta0.T + c[0]
    states, _ = _hop_step([torch.zeros_like(ck) for ck in c], blocks, pairs, c, acts, jacobi, a.damping)
    for _ in range(1, a.max_iter):
        nxt, change = _hop_step(states, blocks, pairs, c, acts, jacobi, a.damping)
        if change <= a.tol:
            break
        states = nxt
    return torch.cat(states, dim=-1)


LOWERINGS["hop.relax"] = _hop_relax
LOWERINGS["hop.readout"] = lambda a, s: s[:, a.offset:a.offset + a.size]

# -- snn lowerings (spiking ops with surrogate gradients, backends/torch_snn.py) ------------
from mpc.backends.torch_snn import SNN_LOWERINGS

LOWERINGS.update(SNN_LOWERINGS)
# -- sparsity: a masked weight trains only where its mask is true (the mask is a bool buffer) --------
LOWERINGS["sp.mask"] = lambda a, w, m: w * m.to(w.dtype)
# -- recurrent layers and LTC neurons (backends/torch_rnn.py) ------------------------------------
from mpc.backends.torch_rnn import RNN_LOWERINGS

LOWERINGS.update(RNN_LOWERINGS)
