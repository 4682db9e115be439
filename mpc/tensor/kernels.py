"""Reference NumPy kernels of the tensor, elementwise, logic and reduction ops (ONNX semantics).

Self-contained (NumPy only, no `from __future__`): the NumPy backend copies this module's source into
model.py, so the interpreter and the generated code run the same functions. Names carry a `t_` prefix
so that they cannot clash with the other helpers of model.py.
"""
import numpy as np


def t_unary(name, x):
    """One elementwise function of ONNX by IR name: sqrt, abs, neg, exp, log, reciprocal, floor, ceil,
    round (half to even), sign, not, bitwise_not, isnan."""
    if name == "reciprocal":
        return (x.dtype.type(1) / x).astype(x.dtype)
    if name == "not":
        return np.logical_not(x)
    if name == "bitwise_not":
        return np.invert(x)
    if name == "neg":
        return np.negative(x)   # two's complement wrap-around for the most negative integer, as ONNX
    fn = {"sqrt": np.sqrt, "abs": np.abs, "exp": np.exp, "log": np.log, "floor": np.floor, "ceil": np.ceil,
          "round": np.rint, "sign": np.sign, "isnan": np.isnan}[name]
    return fn(x)


def t_isinf(x, detect_negative, detect_positive):
    """ONNX IsInf: which entries are -inf (when detect_negative) or +inf (when detect_positive)."""
    return (np.isneginf(x) & bool(detect_negative)) | (np.isposinf(x) & bool(detect_positive))


def t_binary(name, a, b):
    """One broadcasting binary function of ONNX by IR name; comparisons return bool."""
    fn = {"maximum": np.maximum, "minimum": np.minimum, "and": np.logical_and, "or": np.logical_or,
          "xor": np.logical_xor, "bitwise_and": np.bitwise_and, "bitwise_or": np.bitwise_or,
          "bitwise_xor": np.bitwise_xor, "equal": np.equal, "less": np.less, "greater": np.greater,
          "less_equal": np.less_equal, "greater_equal": np.greater_equal, "shift_left": np.left_shift,
          "shift_right": np.right_shift}[name]
    return np.asarray(fn(a, b))


def t_mod(a, b, fmod):
    """ONNX Mod: fmod=1 is C's fmod (sign of the dividend), fmod=0 Python's % (sign of the divisor)."""
    return np.asarray(np.fmod(a, b) if fmod else np.mod(a, b))


def t_pow(a, b):
    """ONNX Pow: the result has the base's dtype; integer ** integer stays in integers (wrapping),
    any other pair is computed in float64 and converted (C's truncation for an integer base)."""
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return np.power(a, b.astype(a.dtype))
    return np.power(a.astype(np.float64), b.astype(np.float64)).astype(a.dtype)


def _accumulator(dtype):
    return np.float64 if dtype.kind == "f" else dtype


def t_reduce(x, mode, axes, keepdims):
    """ONNX Reduce<mode> over `axes` (all when empty); floats accumulate in float64, integers wrap."""
    axes = tuple(sorted(a % x.ndim for a in axes)) if axes else tuple(range(x.ndim))
    acc = _accumulator(x.dtype)
    if x.dtype == np.bool_:   # max is any, min is all (empty: false, true)
        return np.asarray((np.any if mode == "max" else np.all)(x, axis=axes, keepdims=keepdims))
    if mode in ("max", "min"):   # an empty reduction gives the identity (-inf / +inf, or the integer bound)
        info = np.finfo(np.float64) if x.dtype.kind == "f" else np.iinfo(x.dtype)
        lo, hi = (-np.inf, np.inf) if x.dtype.kind == "f" else (info.min, info.max)
        fn, init = (np.max, lo) if mode == "max" else (np.min, hi)
        return np.asarray(fn(x, axis=axes, keepdims=keepdims, initial=init)).astype(x.dtype)
    if mode == "log_sum_exp":
        return _log_sum_exp(x, axes, keepdims)
    xa = x.astype(acc)
    term = {"sum": xa, "mean": xa, "prod": xa, "l1": np.abs(xa), "l2": xa * xa, "sum_square": xa * xa,
            "log_sum": xa}[mode]
    y = np.prod(term, axis=axes, keepdims=keepdims) if mode == "prod" else \
        np.sum(term, axis=axes, keepdims=keepdims)
    if mode == "mean":
        y = y / max(1, int(np.prod([x.shape[a] for a in axes])))
    if mode == "l2":
        y = np.sqrt(y)
    if mode == "log_sum":
        y = np.log(y)
    return np.asarray(y).astype(x.dtype)


def _log_sum_exp(x, axes, keepdims):
    x64 = x.astype(np.float64)
    m = np.max(x64, axis=axes, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0.0)   # all -inf (or empty): shift by 0, the sum is 0 and log gives -inf
    y = np.log(np.sum(np.exp(x64 - m), axis=axes, keepdims=True)) + m
    return np.asarray(y if keepdims else np.squeeze(y, axis=axes)).astype(x.dtype)


def t_arg_reduce(x, largest, axis, keepdims, select_last_index):
    """ONNX ArgMax/ArgMin: int64 indices of the first (or last) extreme entry along `axis`."""
    axis = axis % x.ndim
    xs = np.flip(x, axis) if select_last_index else x
    i = np.argmax(xs, axis=axis) if largest else np.argmin(xs, axis=axis)
    i = (x.shape[axis] - 1 - i) if select_last_index else i
    i = np.asarray(i).astype(np.int64)
    return np.expand_dims(i, axis) if keepdims else i


def t_where(c, a, b):
    """ONNX Where: a where c, else b (broadcasting)."""
    return np.asarray(np.where(c, a, b)).astype(a.dtype)


def t_expand(x, shape):
    """ONNX Expand: broadcast x and `shape` against each other (either may be larger)."""
    return np.array(np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(shape))))


def t_slice_bounds(dim, start, end, step):
    """ONNX Slice's clamped (start, end) on a dim of length `dim`; end -1 means 'through index 0'."""
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        return min(max(start, 0), dim), min(max(end, 0), dim)
    return min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)


def t_slice(x, starts, ends, axes, steps):
    """ONNX Slice with constant starts, ends, axes and steps."""
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        s, e = t_slice_bounds(x.shape[a], s, e, st)
        index[a] = slice(s, None if e < 0 else e, st)
    return np.array(x[tuple(index)])


def t_gather(x, indices, axis):
    """ONNX Gather: entries of x along `axis` at `indices` (negative ones count from the end)."""
    return np.take(x, indices.astype(np.int64), axis=axis)


def t_gather_elements(x, indices, axis):
    """ONNX GatherElements: y[i][j] = x[indices[i][j]][j] for axis 0 (and likewise for other axes)."""
    idx = indices.astype(np.int64)
    idx = np.where(idx < 0, idx + x.shape[axis], idx)
    return np.take_along_axis(x, idx, axis=axis)


def t_pad(x, pads, mode, value):
    """ONNX Pad with non-negative pads [b_1, ..., b_n, e_1, ..., e_n]: constant, reflect, edge or wrap."""
    n = x.ndim
    width = [(pads[i], pads[i + n]) for i in range(n)]
    if mode == "constant":
        return np.pad(x, width, mode="constant", constant_values=x.dtype.type(value))
    return np.pad(x, width, mode=mode)


def t_tile(x, repeats):
    """ONNX Tile: x repeated `repeats[i]` times along dim i."""
    return np.tile(x, tuple(repeats)).reshape(tuple(d * r for d, r in zip(x.shape, repeats)))
