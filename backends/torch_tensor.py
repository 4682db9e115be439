"""Torch lowerings of the tensor, elementwise, logic and reduction op kinds (mpc/ir/ops_nn_tensor.py).

Each function `fn(attrs, *tensors)` computes what the op's reference kernel in `mpc.tensor.kernels`
computes; torch_backend adds `LOWERINGS` to its table. Index arithmetic that has no torch spelling
(negative-step slices, reflect/edge/wrap padding) builds an index vector with NumPy and gathers with
`index_select`, which keeps gradients.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mpc.tensor.kernels import t_slice_bounds

_UNARY = {"sqrt": torch.sqrt, "exp": torch.exp, "log": torch.log, "reciprocal": torch.reciprocal,
          "floor": torch.floor, "ceil": torch.ceil, "round": torch.round, "abs": torch.abs, "neg": torch.neg,
          "sign": torch.sign, "not": torch.logical_not, "bitwise_not": torch.bitwise_not, "isnan": torch.isnan}
_BINARY = {"maximum": torch.maximum, "minimum": torch.minimum, "and": torch.logical_and, "or": torch.logical_or,
           "xor": torch.logical_xor, "bitwise_and": torch.bitwise_and, "bitwise_or": torch.bitwise_or,
           "bitwise_xor": torch.bitwise_xor, "equal": torch.eq, "less": torch.lt, "greater": torch.gt,
           "less_equal": torch.le, "greater_equal": torch.ge, "shift_left": torch.bitwise_left_shift,
           "shift_right": torch.bitwise_right_shift}


def _dims(a, x) -> tuple[int, ...]:
    return tuple(sorted(d % x.dim() for d in a.axes)) if a.axes else tuple(range(x.dim()))


def _prod(x, dims, keepdim):
    for d in sorted(dims, reverse=True):   # torch.prod reduces one dim at a time
        x = torch.prod(x, dim=d, keepdim=keepdim)
    return x


def _reduce(a, x):
    dims, keep, mode = _dims(a, x), a.keepdims, a.mode.value
    if x.dtype == torch.bool:
        return (torch.any if mode == "max" else torch.all)(x, dim=dims, keepdim=keep)
    if mode == "prod":   # torch.prod promotes integers to int64
        return _prod(x, dims, keep).to(x.dtype)
    if mode == "log_sum_exp":
        return torch.logsumexp(x, dim=dims, keepdim=keep)
    if mode in ("max", "min"):
        return (torch.amax if mode == "max" else torch.amin)(x, dim=dims, keepdim=keep)
    term = {"sum": x, "mean": x, "l1": torch.abs(x), "l2": x * x, "sum_square": x * x, "log_sum": x}[mode]
    y = torch.mean(x, dim=dims, keepdim=keep) if mode == "mean" else torch.sum(term, dim=dims, keepdim=keep)
    return torch.sqrt(y) if mode == "l2" else torch.log(y) if mode == "log_sum" else y.to(x.dtype)


def _arg_reduce(a, x):
    axis = a.axis % x.dim()
    xs = torch.flip(x, (axis,)) if a.select_last_index else x
    i = (torch.argmax if a.largest else torch.argmin)(xs, dim=axis, keepdim=a.keepdims)
    return x.shape[axis] - 1 - i if a.select_last_index else i


def _pow(a, x, y):
    if not x.is_floating_point() and not y.is_floating_point():
        return torch.pow(x, y.to(x.dtype))
    return torch.pow(x.double(), y.double()).to(x.dtype)


def _select(x, axis: int, index) -> torch.Tensor:
    return torch.index_select(x, axis, torch.as_tensor(np.asarray(index, np.int64), device=x.device))


def _slice(a, x):
    for s, e, ax, st in zip(a.starts, a.ends, a.axes, a.steps):
        ax = ax % x.dim()
        lo, hi = t_slice_bounds(x.shape[ax], s, e, st)
        x = _select(x, ax, range(lo, hi, st))
    return x


def _gather(a, x, idx):
    ax = a.axis % x.dim()
    idx = torch.where(idx < 0, idx + x.shape[ax], idx).long()
    y = torch.index_select(x, ax, idx.reshape(-1))
    return y.reshape(tuple(x.shape[:ax]) + tuple(idx.shape) + tuple(x.shape[ax + 1:]))


def _gather_elements(a, x, idx):
    ax = a.axis % x.dim()
    return torch.gather(x, ax, torch.where(idx < 0, idx + x.shape[ax], idx).long())


def _pad(a, x):
    n = x.dim()
    if a.mode.value == "constant":
        pairs = [p for i in reversed(range(n)) for p in (a.pads[i], a.pads[i + n])]
        return F.pad(x, pairs, value=a.value)
    for i in range(n):
        if a.pads[i] or a.pads[i + n]:
            index = np.pad(np.arange(x.shape[i]), (a.pads[i], a.pads[i + n]), mode=a.mode.value)
            x = _select(x, i, index)
    return x


def _isinf(a, x):
    return (torch.isneginf(x) & a.detect_negative) | (torch.isposinf(x) & a.detect_positive)


def _unary(fn):
    return lambda a, x: fn(x)


def _binary(fn):
    return lambda a, x, y: fn(x, y)


LOWERINGS = {f"nn.{n}": _unary(fn) for n, fn in _UNARY.items()}
LOWERINGS.update({f"nn.{n}": _binary(fn) for n, fn in _BINARY.items()})
LOWERINGS.update({
    "nn.isinf": _isinf,
    "nn.mod": lambda a, x, y: torch.fmod(x, y) if a.fmod else torch.remainder(x, y),
    "nn.pow": _pow,
    "nn.where": lambda a, c, x, y: torch.where(c, x, y),
    "nn.reduce": _reduce,
    "nn.arg_reduce": _arg_reduce,
    "nn.expand": lambda a, x: torch.broadcast_to(x, torch.broadcast_shapes(x.shape, tuple(a.shape))),
    "nn.tile": lambda a, x: x.repeat(*a.repeats) if a.repeats else x,
    "nn.slice": _slice,
    "nn.gather": _gather,
    "nn.gather_elements": _gather_elements,
    "nn.pad": _pad,
})
