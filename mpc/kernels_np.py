"""Reference NumPy kernels shared by the interpreter and the NumPy backend.

This module imports only NumPy and stays self-contained: the NumPy backend copies the source of
the functions an emitted `model.py` needs, so the interpreter and the generated code run the very
same code. Layouts follow ONNX (NCHW, weights MCkk, pads [top, left, bottom, right]).
"""
import numpy as np


def pool_out_size(size, k, s, pb, pe, d, ceil_mode):
    """Output length of a window sweep (ONNX Conv/MaxPool/AveragePool formula)."""
    span = size + pb + pe - ((k - 1) * d + 1)
    if span < 0:
        raise ValueError(f"window {k} (dilation {d}) larger than padded input {size + pb + pe}")
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + pb:
        out -= 1
    return out


def padded(x, k, strides, pads, dilations, fill, ceil_mode=False):
    """x padded with `fill` (plus the ceil-mode overhang), and the output size (oh, ow)."""
    out = [pool_out_size(x.shape[2 + i], k[i], strides[i], pads[i], pads[i + 2], dilations[i], ceil_mode)
           for i in range(2)]
    extra = [max(0, (out[i] - 1) * strides[i] + (k[i] - 1) * dilations[i] + 1
                 - (x.shape[2 + i] + pads[i] + pads[i + 2])) for i in range(2)]
    if any(pads) or any(extra):
        x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2] + extra[0]), (pads[1], pads[3] + extra[1])),
                   constant_values=fill)
    return x, out


def taps(xp, k, strides, dilations, out):
    """Yield (i, j, view) for each kernel tap: view[n, c, y, x] = xp[n, c, y*s + i*d, x*s + j*d]."""
    for i in range(k[0]):
        r0 = i * dilations[0]
        for j in range(k[1]):
            c0 = j * dilations[1]
            yield i, j, xp[:, :, r0:r0 + (out[0] - 1) * strides[0] + 1:strides[0],
                           c0:c0 + (out[1] - 1) * strides[1] + 1:strides[1]]


def conv2d(x, w, b, strides, pads, dilations, group):
    """2-D convolution (ONNX Conv): im2col patches built tap by tap, one matmul per group."""
    n = x.shape[0]
    m, cg, kh, kw = w.shape
    xp, (oh, ow) = padded(x, (kh, kw), strides, pads, dilations, 0.0)
    cols = np.empty((group, cg, kh, kw, n, oh, ow), dtype=x.dtype)
    for i, j, v in taps(xp, (kh, kw), strides, dilations, (oh, ow)):
        cols[:, :, i, j] = v.reshape(n, group, cg, oh, ow).transpose(1, 2, 0, 3, 4)
    cols = cols.reshape(group, cg * kh * kw, n * oh * ow)
    wg = w.reshape(group, m // group, cg * kh * kw)
    y = np.matmul(wg, cols).reshape(m, n, oh, ow).transpose(1, 0, 2, 3)
    if b is not None:
        y = y + b.reshape(1, m, 1, 1)
    return np.ascontiguousarray(y, dtype=x.dtype)


def maxpool2d(x, kernel, strides, pads, dilations, ceil_mode):
    """2-D max pooling (ONNX MaxPool); padding never wins the max."""
    xp, out = padded(x, kernel, strides, pads, dilations, -np.inf, ceil_mode)
    y = None
    for _, _, v in taps(xp, kernel, strides, dilations, out):
        y = v.copy() if y is None else np.maximum(y, v, out=y)
    return np.ascontiguousarray(y, dtype=x.dtype)


def _window_sum(x, kernel, strides, pads, dilations, ceil_mode):
    xp, out = padded(x, kernel, strides, pads, dilations, 0.0, ceil_mode)
    y = np.zeros(x.shape[:2] + tuple(out), dtype=np.float64)
    for _, _, v in taps(xp, kernel, strides, dilations, out):
        y += v
    return y


def avgpool2d(x, kernel, strides, pads, dilations, ceil_mode, count_include_pad):
    """2-D average pooling (ONNX AveragePool): explicit pads count only with count_include_pad."""
    total = _window_sum(x, kernel, strides, pads, dilations, ceil_mode)
    ones = np.ones((1, 1) + x.shape[2:])
    if count_include_pad:  # explicit pads count, the ceil-mode overhang does not
        ones = np.pad(ones, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])), constant_values=1)
        count = _window_sum(ones, kernel, strides, (0, 0, 0, 0), dilations, ceil_mode)
        count = count[:, :, :total.shape[2], :total.shape[3]]
    else:
        count = _window_sum(ones, kernel, strides, pads, dilations, ceil_mode)
    return (total / count).astype(x.dtype)


def div(a, b):
    """ONNX Div: true division for floats; for integers the quotient truncated toward zero, as in C."""
    if not np.issubdtype(a.dtype, np.integer):
        return a / b
    q = np.floor_divide(a, b)  # no abs(): abs(INT_MIN) would overflow
    inexact = (q * b != a) & ((a < 0) != (b < 0))
    return (q + inexact).astype(np.result_type(a, b), copy=False)


def sigmoid(x):
    """Logistic function without overflow warnings."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def softmax(x, axis):
    """Softmax along one axis, shifted by the max for stability."""
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return (e / np.sum(e, axis=axis, keepdims=True)).astype(x.dtype)


def batchnorm(x, scale, bias, mean, var, epsilon):
    """Inference BatchNormalization over axis 1."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = scale / np.sqrt(var + x.dtype.type(epsilon))
    return ((x - mean.reshape(shape)) * inv.reshape(shape) + bias.reshape(shape)).astype(x.dtype)


def gemm(x, w, c, alpha, beta, trans_a, trans_b):
    """ONNX Gemm: alpha * op(x) @ op(w) + beta * c."""
    x2 = x.T if trans_a else x
    y = x2 @ (w.T if trans_b else w)
    if alpha != 1.0:
        y = y * x.dtype.type(alpha)
    if c is not None:
        y = y + (c * x.dtype.type(beta) if beta != 1.0 else c)
    return y.astype(x.dtype)


def im2col(x, k, strides, pads, dilations, group):
    """Patches of an NCHW array for a grouped conv: (group, N*OH*OW, C/group*kh*kw), and (OH, OW)."""
    n, c = x.shape[:2]
    cg = c // group
    xp, (oh, ow) = padded(x, k, strides, pads, dilations, 0.0)
    cols = np.empty((group, n, oh, ow, cg, k[0], k[1]), dtype=x.dtype)
    for i, j, v in taps(xp, k, strides, dilations, (oh, ow)):
        cols[..., i, j] = v.reshape(n, group, cg, oh, ow).transpose(1, 0, 3, 4, 2)
    return cols.reshape(group, n * oh * ow, cg * k[0] * k[1]), (oh, ow)


def mp_dense(mp_dot, x, w, gain, offset, gamma, c):
    """mp.dot: gain * y_MP(x*c, w/c; gamma) + offset over the last axis (mp_dot is the MP kernel)."""
    lead = x.shape[:-1]
    xs = np.ascontiguousarray(x.reshape(-1, x.shape[-1]) * x.dtype.type(c))
    y = mp_dot(xs, np.ascontiguousarray(w / w.dtype.type(c)), gamma) * gain
    y = y + offset if offset is not None else y
    return y.astype(x.dtype).reshape(lead + (w.shape[0],))


def mp_conv2d(mp_dot, x, w, gain, offset, gamma, c, strides, pads, dilations, group):
    """mp.conv2d: mp_dense over the im2col patches of each group, back in NCHW."""
    m = w.shape[0]
    cols, (oh, ow) = im2col(x, w.shape[2:], strides, pads, dilations, group)
    wg = w.reshape(group, m // group, -1)
    gg, og = gain.reshape(group, -1), None if offset is None else offset.reshape(group, -1)
    ys = [mp_dense(mp_dot, cols[g], wg[g], gg[g], None if og is None else og[g], gamma, c) for g in range(group)]
    y = np.concatenate(ys, axis=1).reshape(x.shape[0], oh, ow, m).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(y, dtype=x.dtype)
