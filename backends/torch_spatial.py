"""Torch lowerings of the spatial, normalization and activation ops (mpc.ir.ops_nn_spatial).

Same semantics as the reference kernels of `mpc.kernels_spatial`: convolutions run torch's
convNd / conv_transposeNd on explicitly padded (or afterwards cropped) tensors; pools sweep the
kernel tap by tap over strided views as the reference does (any rank, dilations, ceil-mode
overhang); Resize gathers with the index and weight tables the reference computes, so every
coordinate and rounding mode matches it exactly and stays differentiable in the data.
`mpc.backends.torch_backend` merges `LOWERINGS` into its table (this module does not import it).
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F

from mpc import kernels_spatial as S


def _pad_nd(x, pads, value=0.0):
    """Pad the spatial dims by ONNX pads [begins..., ends...] (torch lists the last dim first)."""
    n = len(pads) // 2
    if not any(pads):
        return x
    widths = [p for i in reversed(range(n)) for p in (pads[i], pads[i + n])]
    return F.pad(x, widths, value=value)


def _window_pad(x, kernel, a, fill):
    """x padded with `fill` plus the ceil-mode overhang (as the reference), and the output sizes."""
    n = len(kernel)
    out = [S.window_out(x.shape[2 + i], kernel[i], a.strides[i], a.pads[i], a.pads[i + n], a.dilations[i],
                        a.ceil_mode) for i in range(n)]
    extra = [max(0, (out[i] - 1) * a.strides[i] + (kernel[i] - 1) * a.dilations[i] + 1
                 - (x.shape[2 + i] + a.pads[i] + a.pads[i + n])) for i in range(n)]
    pads = tuple(a.pads[:n]) + tuple(p + e for p, e in zip(a.pads[n:], extra))
    return _pad_nd(x, pads, fill), out


def _taps(xp, kernel, a, out):
    for tap in itertools.product(*(range(k) for k in kernel)):
        index = tuple(slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, o, s in zip(tap, a.dilations, out,
                                                                                    a.strides))
        yield xp[(slice(None), slice(None)) + index]


def _conv(a, x, w, b=None):
    fn = (F.conv1d, F.conv2d, F.conv3d)[x.dim() - 3]
    return fn(_pad_nd(x, a.pads), w, b, tuple(a.strides), 0, tuple(a.dilations), a.group)


def _maxpool(a, x):
    xp, out = _window_pad(x, a.kernel, a, -math.inf)
    views = list(_taps(xp, a.kernel, a, out))
    return torch.stack(views).amax(0) if len(views) > 1 else views[0].clone()


def _tap_sum(x, a, pads):
    xp, out = _window_pad(x, a.kernel, _Pads(a, pads), 0.0)
    return sum(_taps(xp, a.kernel, a, out))


class _Pads:
    """The window attributes of `a` with other pads."""

    def __init__(self, a, pads):
        self.strides, self.dilations, self.ceil_mode, self.pads = a.strides, a.dilations, a.ceil_mode, pads


def _avgpool(a, x):
    n = len(a.kernel)
    total = _tap_sum(x, a, a.pads)
    ones = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype, device=x.device)
    if not a.count_include_pad:
        return total / _tap_sum(ones, a, a.pads)
    count = _tap_sum(_pad_nd(ones, a.pads, 1.0), a, (0,) * (2 * n))   # explicit pads count, the overhang not
    return total / count[(slice(None), slice(None)) + tuple(slice(0, s) for s in total.shape[2:])]


def _maxpool_indices(a, x):
    y = _maxpool(a, x)
    _, idx = S.maxpool_indices(x.detach().cpu().numpy(), a.kernel, a.strides, a.pads, a.dilations, a.ceil_mode,
                               a.storage_order)   # integer positions: nothing to differentiate
    return y, torch.from_numpy(np.ascontiguousarray(idx)).to(x.device)


def _conv_transpose(a, x, w, b=None):
    n = x.dim() - 2
    fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[n - 1]
    y = fn(x, w, None, tuple(a.strides), 0, 0, a.group, tuple(a.dilations))
    y = _pad_nd(y, (0,) * n + tuple(a.output_padding))
    grow = tuple(max(0, -p) for p in a.pads)
    y = _pad_nd(y, grow)
    crop = tuple(slice(max(0, a.pads[i]), y.shape[2 + i] - max(0, a.pads[i + n])) for i in range(n))
    y = y[(slice(None), slice(None)) + crop]
    return y + b.reshape((1, -1) + (1,) * n) if b is not None else y


def _resize(a, x):
    y = x
    for axis, (size, out, scale) in enumerate(zip(x.shape, a.sizes, a.scales)):
        out = size if (scale, out) == (1.0, 1) else out   # a symbolic dim keeps its size
        if out == size and scale == 1.0:
            continue
        taps = S.resize_taps(size, out, scale, a.mode.value, a.coord_mode.value, a.nearest_mode.value,
                             a.cubic_coeff_a, a.exclude_outside)
        if taps[0][1] is None:
            y = y.index_select(axis, torch.from_numpy(taps[0][0]).to(x.device))
            continue
        shape = (-1,) + (1,) * (x.dim() - axis - 1)
        y = sum(y.index_select(axis, torch.from_numpy(i).to(x.device))
                * torch.from_numpy(w).to(x.dtype).reshape(shape) for i, w in taps)
    return y


def _layernorm(a, x, scale, bias=None):
    dims = tuple(range(a.axis % x.dim(), x.dim()))
    mean = x.mean(dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dims, keepdim=True)
    y = (x - mean) / torch.sqrt(var + a.epsilon) * scale
    return y + bias if bias is not None else y


def _layernorm_stats(a, x, scale, bias=None):
    dims = tuple(range(a.axis % x.dim(), x.dim()))
    stash = getattr(torch, np.dtype(a.stash.numpy).name)
    xs = x.to(stash) if stash == torch.float64 else x   # statistics at least as precise as the stash type
    mean = xs.mean(dims, keepdim=True)
    inv = torch.rsqrt(((xs - mean) ** 2).mean(dims, keepdim=True) + a.epsilon)
    y = ((xs - mean) * inv * scale).to(x.dtype)
    return (y + bias if bias is not None else y), mean.to(stash), inv.to(stash)


def _instancenorm(a, x, scale, bias):
    dims = tuple(range(2, x.dim()))
    shape = (1, -1) + (1,) * (x.dim() - 2)
    mean = x.mean(dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dims, keepdim=True)
    return (x - mean) / torch.sqrt(var + a.epsilon) * scale.reshape(shape) + bias.reshape(shape)


def _groupnorm(a, x, scale, bias):
    g = x.reshape(x.shape[0], a.num_groups, -1)
    mean = g.mean(2, keepdim=True)
    var = ((g - mean) ** 2).mean(2, keepdim=True)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return ((g - mean) / torch.sqrt(var + a.epsilon)).reshape(x.shape) * scale.reshape(shape) + bias.reshape(shape)


def _lrn(a, x):
    sq = F.pad(x * x, (0, 0) * (x.dim() - 2) + ((a.size - 1) // 2, a.size // 2))
    total = sum(sq[:, i:i + x.shape[1]] for i in range(a.size))
    return x / (a.bias + a.alpha / a.size * total) ** a.beta


def _hardmax(a, x):
    return F.one_hot(x.argmax(a.axis), x.shape[a.axis]).to(x.dtype).movedim(-1, a.axis % x.dim())


def _gelu(a, x):
    return F.gelu(x, approximate=a.approximate.value)


# kind -> fn(attrs, *tensors); the torch lowering merges this table into its own
LOWERINGS = {
    "nn.conv": _conv,
    "nn.maxpool": _maxpool,
    "nn.maxpool_indices": _maxpool_indices,
    "nn.avgpool": _avgpool,
    "nn.conv_transpose": _conv_transpose,
    "nn.global_maxpool": lambda a, x: x.amax(tuple(range(2, x.dim())), keepdim=True),
    "nn.resize": _resize,
    "nn.layernorm": _layernorm,
    "nn.layernorm_stats": _layernorm_stats,
    "nn.instancenorm": _instancenorm,
    "nn.groupnorm": _groupnorm,
    "nn.lrn": _lrn,
    "nn.prelu": lambda a, x, s: torch.where(x < 0, x * s, x),
    "nn.erf": lambda a, x: torch.erf(x),
    "nn.gelu": _gelu,
    "nn.log_softmax": lambda a, x: torch.log_softmax(x, a.axis),
    "nn.hardmax": _hardmax,
    "nn.hard_sigmoid": lambda a, x: torch.clamp(x * a.alpha + a.beta, 0, 1),
    "nn.hard_swish": lambda a, x: x * torch.clamp(x / 6 + 0.5, 0, 1),
    "nn.softplus": lambda a, x: F.softplus(x),
    "nn.softsign": lambda a, x: x / (1 + x.abs()),
    "nn.elu": lambda a, x: F.elu(x, a.alpha),
    "nn.selu": lambda a, x: a.gamma * torch.where(x > 0, x, a.alpha * torch.expm1(torch.clamp(x, max=0))),
    "nn.celu": lambda a, x: F.celu(x, a.alpha),
    "nn.mish": lambda a, x: x * torch.tanh(F.softplus(x)),
    "nn.thresholded_relu": lambda a, x: torch.where(x > a.alpha, x, torch.zeros_like(x)),
}
