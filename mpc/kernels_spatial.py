"""Reference NumPy kernels of the spatial, normalization and activation ops (rank-generic windows).

Self-contained (NumPy and the standard library only): the interpreter calls these functions and the
NumPy backend copies this whole module into an emitted `model.py`, so both run the very same code.
Layouts follow ONNX: [N, C, D1, ..., Dn] data, pads as [begin_1, ..., begin_n, end_1, ..., end_n].
Window ops sweep the kernel tap by tap over strided views (one vectorized NumPy step per tap), which
works for any number n of spatial dims.
"""
import itertools
import math

import numpy as np


# -- windows ------------------------------------------------------------------------------
def window_out(size, k, s, pb, pe, d, ceil_mode):
    """Output length of a window sweep (ONNX Conv/MaxPool/AveragePool formula)."""
    span = size + pb + pe - ((k - 1) * d + 1)
    if span < 0:
        raise ValueError(f"window {k} (dilation {d}) larger than padded input {size + pb + pe}")
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + pb:  # a last window starting in the end padding is dropped
        out -= 1
    return out


def window_pad(x, kernel, strides, pads, dilations, fill, ceil_mode=False):
    """x padded with `fill` on its spatial dims (plus the ceil-mode overhang), and the output sizes."""
    n = len(kernel)
    out = [window_out(x.shape[2 + i], kernel[i], strides[i], pads[i], pads[i + n], dilations[i], ceil_mode)
           for i in range(n)]
    extra = [max(0, (out[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1
                 - (x.shape[2 + i] + pads[i] + pads[i + n])) for i in range(n)]
    widths = [(0, 0), (0, 0)] + [(pads[i], pads[i + n] + extra[i]) for i in range(n)]
    if any(p for w in widths for p in w):
        x = np.pad(x, widths, constant_values=fill)
    return x, out


def window_taps(xp, kernel, strides, dilations, out):
    """Yield (tap, view) for every kernel tap: view[n, c, o...] = xp[n, c, o*s + tap*d ...]."""
    for tap in itertools.product(*(range(k) for k in kernel)):
        index = tuple(slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, o, s in zip(tap, dilations, out, strides))
        yield tap, xp[(slice(None), slice(None)) + index]


def conv_nd(x, w, b, strides, pads, dilations, group):
    """N-D convolution (ONNX Conv): patches gathered tap by tap, one matmul per group."""
    n, m, cg = x.shape[0], w.shape[0], w.shape[1]
    kernel = w.shape[2:]
    xp, out = window_pad(x, kernel, strides, pads, dilations, 0.0)
    taps = math.prod(kernel)
    cols = np.empty((group, cg, taps, n) + tuple(out), dtype=x.dtype)
    for t, (_, v) in enumerate(window_taps(xp, kernel, strides, dilations, out)):
        cols[:, :, t] = np.moveaxis(v.reshape((n, group, cg) + tuple(out)), 0, 2)
    cols = cols.reshape(group, cg * taps, n * math.prod(out))
    y = np.matmul(w.reshape(group, m // group, cg * taps), cols).reshape((m, n) + tuple(out))
    y = np.moveaxis(y, 0, 1)
    if b is not None:
        y = y + b.reshape((1, m) + (1,) * len(out))
    return np.ascontiguousarray(y, dtype=x.dtype)


def maxpool_nd(x, kernel, strides, pads, dilations, ceil_mode):
    """N-D max pooling (ONNX MaxPool); padding never wins the max."""
    xp, out = window_pad(x, kernel, strides, pads, dilations, -np.inf, ceil_mode)
    y = None
    for _, v in window_taps(xp, kernel, strides, dilations, out):
        y = v.copy() if y is None else np.maximum(y, v, out=y)
    return np.ascontiguousarray(y, dtype=x.dtype)


def maxpool_indices(x, kernel, strides, pads, dilations, ceil_mode, storage_order):
    """N-D max pooling and ONNX's Indices: the flat position of each max in x (the first one on ties),
    spatial dims row-major (storage_order 0) or column-major (1), plus (n*C + c) * spatial size."""
    n = len(kernel)
    xp, out = window_pad(x, kernel, strides, pads, dilations, -np.inf, ceil_mode)
    sizes = x.shape[2:]
    order = range(n) if storage_order == 0 else range(n - 1, -1, -1)
    step, weights = 1, [0] * n
    for i in reversed(list(order)):
        weights[i], step = step, step * sizes[i]
    grid = np.meshgrid(*(np.arange(o) for o in out), indexing="ij")
    y, idx = None, None
    for tap, v in window_taps(xp, kernel, strides, dilations, out):
        pos = sum((g * s + t * d - p) * wt for g, s, t, d, p, wt in zip(grid, strides, tap, dilations, pads, weights))
        if y is None:
            y, idx = v.copy(), np.broadcast_to(pos, v.shape).copy()
            continue
        better = v > y
        y = np.where(better, v, y)
        idx = np.where(better, pos, idx)
    plane = x.shape[0] * x.shape[1]
    base = (np.arange(plane).reshape(x.shape[:2]) * math.prod(sizes)).reshape(x.shape[:2] + (1,) * n)
    return np.ascontiguousarray(y, dtype=x.dtype), (idx + base).astype(np.int64)


def _tap_sum(x, kernel, strides, pads, dilations, ceil_mode):
    xp, out = window_pad(x, kernel, strides, pads, dilations, 0.0, ceil_mode)
    y = np.zeros(x.shape[:2] + tuple(out), dtype=np.float64)
    for _, v in window_taps(xp, kernel, strides, dilations, out):
        y += v
    return y


def avgpool_nd(x, kernel, strides, pads, dilations, ceil_mode, count_include_pad):
    """N-D average pooling (ONNX AveragePool): explicit pads count only with count_include_pad,
    the ceil-mode overhang never does."""
    n = len(kernel)
    total = _tap_sum(x, kernel, strides, pads, dilations, ceil_mode)
    ones = np.ones((1, 1) + x.shape[2:])
    if count_include_pad:
        ones = np.pad(ones, [(0, 0), (0, 0)] + [(pads[i], pads[i + n]) for i in range(n)], constant_values=1)
        count = _tap_sum(ones, kernel, strides, (0,) * (2 * n), dilations, ceil_mode)
        count = count[(slice(None), slice(None)) + tuple(slice(0, s) for s in total.shape[2:])]
    else:
        count = _tap_sum(ones, kernel, strides, pads, dilations, ceil_mode)
    return (total / count).astype(x.dtype)


def conv_transpose_nd(x, w, b, strides, pads, dilations, group, output_padding):
    """N-D transposed convolution (ONNX ConvTranspose): one matmul gives every input pixel times every
    kernel tap, which is then added into the output tap by tap (strided views); the full result is
    cropped by pads (a negative pad adds zeros) and extended by output_padding."""
    n, c = x.shape[:2]
    mg, kernel = w.shape[1], w.shape[2:]
    r, taps = len(kernel), math.prod(kernel)
    sizes = x.shape[2:]
    full = [(s - 1) * st + (k - 1) * d + 1 + op for s, st, k, d, op in zip(sizes, strides, kernel, dilations,
                                                                             output_padding)]
    # contiguous operands: NumPy's matmul leaves BLAS for a slow loop on transposed views
    wg = np.ascontiguousarray(w.reshape(group, c // group, mg * taps).transpose(0, 2, 1))
    xg = np.ascontiguousarray(np.moveaxis(x.reshape(n, group, c // group, -1), 0, 2)).reshape(group, c // group, -1)
    cols = np.matmul(wg, xg).reshape((group, mg, taps, n) + tuple(sizes))
    y = np.zeros((group, mg, n) + tuple(full), dtype=x.dtype)
    for t, tap in enumerate(itertools.product(*(range(k) for k in kernel))):
        index = tuple(slice(i * d, i * d + (s - 1) * st + 1, st) for i, d, s, st in zip(tap, dilations, sizes,
                                                                                      strides))
        y[(slice(None),) * 3 + index] += cols[:, :, t]
    y = np.moveaxis(y, 2, 0).reshape((n, group * mg) + tuple(full))
    grow = [(0, 0), (0, 0)] + [(max(0, -pads[i]), max(0, -pads[i + r])) for i in range(r)]
    y = np.pad(y, grow)
    crop = tuple(slice(max(0, pads[i]), y.shape[2 + i] - max(0, pads[i + r])) for i in range(r))
    y = y[(slice(None), slice(None)) + crop]
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * r)
    return np.ascontiguousarray(y, dtype=x.dtype)


def global_maxpool(x):
    """Max over every spatial dim, kept as size 1 (ONNX GlobalMaxPool)."""
    return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)


# -- resize -------------------------------------------------------------------------------
def resize_coords(size, out, scale, coord_mode):
    """Where each output position samples the input axis (float64), per ONNX Resize's
    coordinate_transformation_mode."""
    o = np.arange(out, dtype=np.float64)
    if coord_mode == "half_pixel":
        return (o + 0.5) / scale - 0.5
    if coord_mode == "half_pixel_symmetric":
        adjust = out / (scale * size)
        return size / 2 * (1 - adjust) + (o + 0.5) / scale - 0.5
    if coord_mode == "pytorch_half_pixel":
        return (o + 0.5) / scale - 0.5 if out > 1 else np.zeros(out)
    if coord_mode == "align_corners":
        return o * (size - 1) / (out - 1) if out > 1 else np.zeros(out)
    if coord_mode == "asymmetric":
        return o / scale
    if coord_mode == "tf_half_pixel_for_nn":
        return (o + 0.5) / scale
    raise ValueError(f"unknown coordinate_transformation_mode {coord_mode!r}")


def resize_nearest_index(coords, size, nearest_mode):
    """The input index an output position takes in nearest mode (ONNX nearest_mode rounding)."""
    if nearest_mode == "round_prefer_floor":
        i = np.ceil(coords - 0.5)
    elif nearest_mode == "round_prefer_ceil":
        i = np.floor(coords + 0.5)
    elif nearest_mode == "floor":
        i = np.floor(coords)
    else:
        i = np.ceil(coords)
    return np.clip(i, 0, size - 1).astype(np.int64)


def resize_linear_taps(coords, size):
    """Linear interpolation: the two input indices and the weight of the second, coordinates
    clamped to the input (the edge value repeats outside it)."""
    c = np.clip(coords, 0, size - 1)
    lo = np.floor(c).astype(np.int64)
    hi = np.minimum(lo + 1, size - 1)
    return lo, hi, c - lo


def resize_cubic_taps(coords, size, a, exclude_outside):
    """Cubic convolution (Keys, coefficient a): four (index, weight) pairs per output position around
    floor(coordinate), indices clamped to the input; with exclude_outside the taps outside the input
    get weight 0 and the others are renormalized."""
    base = np.floor(coords)
    r = coords - base
    dist = [1 + r, r, 1 - r, 2 - r]
    near = [((a + 2) * d - (a + 3)) * d * d + 1 for d in dist[1:3]]
    far = [((a * d - 5 * a) * d + 8 * a) * d - 4 * a for d in (dist[0], dist[3])]
    weights = [far[0], near[0], near[1], far[1]]
    index = [base.astype(np.int64) + k for k in (-1, 0, 1, 2)]
    if exclude_outside:
        weights = [np.where((i >= 0) & (i < size), w, 0.0) for i, w in zip(index, weights)]
        total = sum(weights)
        weights = [w / total for w in weights]
    return [(np.clip(i, 0, size - 1), w) for i, w in zip(index, weights)]


def resize_taps(size, out, scale, mode, coord_mode, nearest_mode, cubic_a, exclude_outside):
    """(input index, weight) pairs that make one resized axis; the weight is None for nearest."""
    coords = resize_coords(size, out, scale, coord_mode)
    if mode == "nearest":
        return [(resize_nearest_index(coords, size, nearest_mode), None)]
    if mode == "linear":
        lo, hi, frac = resize_linear_taps(coords, size)
        return [(lo, 1 - frac), (hi, frac)]
    return resize_cubic_taps(coords, size, cubic_a, exclude_outside)


def resize(x, sizes, scales, mode, coord_mode, nearest_mode, cubic_a=-0.75, exclude_outside=False):
    """ONNX Resize in nearest, (multi)linear or cubic mode: one separable pass per resized axis."""
    y = x if mode == "nearest" else x.astype(np.float64)
    for axis, (size, out, scale) in enumerate(zip(x.shape, sizes, scales)):
        if out == size and scale == 1.0:
            continue
        taps = resize_taps(size, out, scale, mode, coord_mode, nearest_mode, cubic_a, exclude_outside)
        if taps[0][1] is None:
            y = np.take(y, taps[0][0], axis=axis)
            continue
        shape = (-1,) + (1,) * (x.ndim - axis - 1)
        y = sum(np.take(y, i, axis=axis) * w.reshape(shape) for i, w in taps)
    return np.ascontiguousarray(y, dtype=x.dtype)


# -- normalization ------------------------------------------------------------------------
def layernorm(x, scale, bias, axis, epsilon):
    """ONNX LayerNormalization: normalize over dims axis..last (in float64), then scale and shift."""
    axes = tuple(range(axis % x.ndim, x.ndim))
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x64 - mean) / np.sqrt(var + epsilon) * scale
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype)


def layernorm_stats(x, scale, bias, axis, epsilon, stash):
    """LayerNormalization with its Mean and InvStdDev outputs (size 1 over the normalized dims), those
    two in the `stash` dtype (a NumPy dtype name)."""
    axes = tuple(range(axis % x.ndim, x.ndim))
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes, keepdims=True)
    inv = 1 / np.sqrt(((x64 - mean) ** 2).mean(axis=axes, keepdims=True) + epsilon)
    y = (x64 - mean) * inv * scale
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype), mean.astype(stash), inv.astype(stash)


def instancenorm(x, scale, bias, epsilon):
    """ONNX InstanceNormalization: each (sample, channel) normalized over its spatial dims."""
    axes = tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x64 - mean) / np.sqrt(var + epsilon) * scale.reshape(shape) + bias.reshape(shape)
    return y.astype(x.dtype)


def groupnorm(x, scale, bias, num_groups, epsilon):
    """ONNX GroupNormalization (opset 21): each sample's channels split into num_groups groups, each
    group normalized over its channels and spatial dims, then a per-channel scale and shift."""
    n, c = x.shape[:2]
    g = x.astype(np.float64).reshape((n, num_groups, -1))
    mean = g.mean(axis=2, keepdims=True)
    var = ((g - mean) ** 2).mean(axis=2, keepdims=True)
    y = ((g - mean) / np.sqrt(var + epsilon)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    return (y * scale.reshape(shape) + bias.reshape(shape)).astype(x.dtype)


def lrn(x, size, alpha, beta, bias):
    """ONNX LRN: x / (bias + alpha / size * sum of squares over a window of channels) ** beta."""
    x64 = x.astype(np.float64)
    sq = np.pad(x64 ** 2, [(0, 0), ((size - 1) // 2, size // 2)] + [(0, 0)] * (x.ndim - 2))
    total = sum(sq[:, i:i + x.shape[1]] for i in range(size))
    return (x64 / (bias + alpha / size * total) ** beta).astype(x.dtype)


# -- activations --------------------------------------------------------------------------
_ERF = np.frompyfunc(math.erf, 1, 1)
# Numerical Recipes' erfc(z) = t * exp(-z^2 + P(t)), t = 1 / (1 + z / 2): relative error below 1.2e-7
_ERFC = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587,
         -0.82215223, 0.17087277)


# erf(z) = 2 / sqrt(pi) * sum_n (-1)^n z^(2n+1) / (n! (2n+1)): eight terms reach 4e-10 at |z| = 0.5
_SERIES = tuple((-1) ** n / (math.factorial(n) * (2 * n + 1)) * 2 / math.sqrt(math.pi) for n in range(8))


def _erf_fast(z):
    """erf of float64 values to float32 accuracy (relative error < 6e-8): the Maclaurin series below
    |z| = 0.5, where 1 - erfc would lose the small values' digits, Numerical Recipes' erfc above;
    each only on its own elements, Horner's scheme in place."""
    a = np.abs(z)
    out = np.empty_like(a)
    small = a < 0.5
    s, big = a[small], a[~small]
    s2, acc = s * s, np.full_like(s, _SERIES[-1])
    for c in reversed(_SERIES[:-1]):
        acc *= s2
        acc += c
    out[small] = acc * s
    t = 1 / (1 + 0.5 * big)
    poly = np.full_like(t, _ERFC[-1])
    for c in reversed(_ERFC[:-1]):
        poly *= t
        poly += c
    poly -= big * big
    out[~small] = 1 - t * np.exp(poly)
    return np.copysign(out, z)


def _erf64(x64, exact):
    return _ERF(x64).astype(np.float64) if exact else _erf_fast(x64)


def erf(x):
    """The error function, elementwise: math.erf for float64, a vectorized approximation accurate to
    float32 (relative error < 6e-8, below half a float32 ulp) for float32 and float16."""
    return _erf64(x.astype(np.float64), x.dtype == np.float64).astype(x.dtype)


def gelu(x, approximate):
    """ONNX Gelu: x * Phi(x) with the exact normal CDF ('none') or its tanh approximation ('tanh')."""
    x64 = x.astype(np.float64)
    if approximate == "tanh":
        y = 0.5 * x64 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64 ** 3)))
    else:
        y = 0.5 * x64 * (1 + _erf64(x64 / math.sqrt(2), x.dtype == np.float64))
    return y.astype(x.dtype)


def prelu(x, slope):
    """ONNX PRelu: slope * x where x < 0 (slope broadcast to x)."""
    return np.where(x < 0, x * slope, x).astype(x.dtype)


def log_softmax(x, axis):
    """Log of the softmax along one axis, shifted by the max for stability."""
    z = x.astype(np.float64) - np.max(x, axis=axis, keepdims=True)
    return (z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))).astype(x.dtype)


def hardmax(x, axis):
    """1 at the first maximum along the axis, 0 elsewhere."""
    first = np.expand_dims(np.argmax(x, axis=axis), axis)
    y = np.zeros_like(x)
    np.put_along_axis(y, first, 1, axis=axis)
    return y


def hard_sigmoid(x, alpha, beta):
    """max(0, min(1, alpha * x + beta))."""
    return np.clip(x.astype(np.float64) * alpha + beta, 0, 1).astype(x.dtype)


def hard_swish(x):
    """x * max(0, min(1, x / 6 + 1 / 2))."""
    return (x * np.clip(x.astype(np.float64) / 6 + 0.5, 0, 1)).astype(x.dtype)


def softplus(x):
    """log(1 + exp(x)) without overflow."""
    return np.logaddexp(0, x.astype(np.float64)).astype(x.dtype)


def softsign(x):
    """x / (1 + |x|)."""
    return (x / (1 + np.abs(x))).astype(x.dtype)


def elu(x, alpha):
    """x for x >= 0, alpha * (exp(x) - 1) below."""
    x64 = x.astype(np.float64)
    return np.where(x64 >= 0, x64, alpha * np.expm1(np.minimum(x64, 0))).astype(x.dtype)


def selu(x, alpha, gamma):
    """gamma * x for x > 0, gamma * alpha * (exp(x) - 1) at and below 0."""
    x64 = x.astype(np.float64)
    return (gamma * np.where(x64 > 0, x64, alpha * np.expm1(np.minimum(x64, 0)))).astype(x.dtype)


def celu(x, alpha):
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."""
    x64 = x.astype(np.float64)
    return (np.maximum(x64, 0) + np.minimum(0, alpha * np.expm1(np.minimum(x64, 0) / alpha))).astype(x.dtype)


def mish(x):
    """x * tanh(softplus(x))."""
    x64 = x.astype(np.float64)
    return (x64 * np.tanh(np.logaddexp(0, x64))).astype(x.dtype)


def thresholded_relu(x, alpha):
    """x where x > alpha, else 0."""
    return np.where(x > alpha, x, 0).astype(x.dtype)
