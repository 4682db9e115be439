"""The `fx` op family: signed fixed-point arithmetic with the rounding and overflow written on each op.

    fx.quantize(x)           float -> fx<W,F> `to`      q = overflow(round(x·2^F))
    fx.dequantize(q)         fx<W,F> -> float `to`      q·2^-F (exact in f64; f32 rounds)
    fx.cast(q)               fx -> fx `to`               requantize: shift with rounding, then overflow
    fx.add(a, b)             a + b at `to`'s fraction (operands shifted to it; broadcasting)
    fx.matmul(x, w)          exact integer x @ w, result fraction = Fx + Fw, then overflow to `to`
    fx.conv2d(x, w)          exact integer convolution (NCHW, MCkk), fraction Fx + Fw
    fx.relu(q)               max(q, 0), same type
    fx.maxpool2d(q)          integer max pooling, same type
    fx.avgpool2d(q)          window sum divided by the area: a rounding shift when the area is a power
                             of two, else an exact integer division with the same rounding
    fx.mp_dot(x, w, shift, sign)    integer margin propagation: see `mpc.fx.arith.mp_dot`
    fx.mp_conv2d(x, w, shift, sign) the same over the im2col patches of a convolution

The kernels are the bit-accurate emulator (mpc.fx.arith); backends that print these ops are
checked against them bit for bit. Operands and results are signed `fx<W,F>`; widths are bounded so
that int64 holds every exact intermediate (operands <= 32 bits, results <= 62 bits).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mpc.fx import arith as A
from mpc.fx import tally as C
from mpc.fx.arith import Overflow, Rounding
from mpc.ir.opdefs import InferError, define
from mpc.ir.types import FLOATS, DType, TensorType, broadcast_shapes

MAX_IN, MAX_OUT = 32, 62
PURE = frozenset({"pure"})   # not foldable: the datapath of a fixed-point backend, kept as ops


@dataclass(frozen=True)
class ConvertAttrs:
    to: DType
    rounding: Rounding = Rounding.NEAREST
    overflow: Overflow = Overflow.SATURATE


@dataclass(frozen=True)
class DequantAttrs:
    to: DType = DType.f32


@dataclass(frozen=True)
class AccumAttrs:
    to: DType
    overflow: Overflow = Overflow.SATURATE
    acc_bits: int = 64   # width of a backend's running sum; 32 only where no partial sum can exceed it
    sparse: bool = False   # C lowering (c-sparse): emit and count only the non-zero weights' terms


@dataclass(frozen=True)
class FxConvAttrs:
    to: DType
    overflow: Overflow = Overflow.SATURATE
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilations: tuple[int, int] = (1, 1)
    group: int = 1
    acc_bits: int = 64
    sparse: bool = False   # C lowering (c-sparse): emit and count only the non-zero weights' taps


@dataclass(frozen=True)
class FxPoolAttrs:
    kernel: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilations: tuple[int, int] = (1, 1)
    ceil_mode: bool = False


@dataclass(frozen=True)
class FxAvgPoolAttrs:
    kernel: tuple[int, int]
    to: DType
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    rounding: Rounding = Rounding.NEAREST
    overflow: Overflow = Overflow.SATURATE


@dataclass(frozen=True)
class FxMPAttrs:
    gamma: int
    to: DType
    c_shift: int = 0
    overflow: Overflow = Overflow.SATURATE


@dataclass(frozen=True)
class FxMPConvAttrs:
    gamma: int
    to: DType
    c_shift: int = 0
    overflow: Overflow = Overflow.SATURATE
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilations: tuple[int, int] = (1, 1)
    group: int = 1


# -- type checks ----------------------------------------------------------------------------
def _fx(t, role: str = "operand", limit: int = MAX_IN) -> DType:
    d = t.dtype if isinstance(t, TensorType) else t
    if d.kind != "fx":
        raise InferError(f"{role} must be signed fixed point fx<W,F>, got {d}")
    if d.width > limit:
        raise InferError(f"{role} {d} is wider than {limit} bits")
    return d


def _result(to: DType) -> DType:
    return _fx(to, "result type 'to'", MAX_OUT)


def _quantize_infer(types, a):
    if types[0].dtype not in FLOATS:
        raise InferError(f"fx.quantize wants a float operand, got {types[0]}")
    return [TensorType(_fx(a.to, "result type 'to'"), types[0].shape)]


def _dequantize_infer(types, a):
    _fx(types[0], limit=MAX_OUT)
    if a.to not in FLOATS:
        raise InferError(f"fx.dequantize converts to f16, f32 or f64, got {a.to}")
    return [TensorType(a.to, types[0].shape)]


def _cast_infer(types, a):
    _fx(types[0], limit=MAX_OUT)
    return [TensorType(_fx(a.to, "result type 'to'", MAX_OUT), types[0].shape)]


def _add_infer(types, a):
    to = _result(a.to)
    for t in types:
        _fx(t, limit=MAX_OUT)
    shape = broadcast_shapes(types[0].shape, types[1].shape)
    if shape is None:
        raise InferError(f"shapes {types[0]} and {types[1]} do not broadcast")
    return [TensorType(to, shape)]


def sum_bits(x: DType, w: DType, depth: int) -> int:
    """Bits (sign included) that bound every partial sum of `depth` products of x and w."""
    return x.width + w.width + max(0, depth - 1).bit_length()


def _check_product(x: DType, w: DType, to: DType, depth: int, acc_bits: int = 64) -> None:
    if to.frac != x.frac + w.frac:
        raise InferError(f"result fraction must be {x.frac} + {w.frac} = {x.frac + w.frac}, got {to}")
    if sum_bits(x, w, depth) > 63:
        raise InferError(f"{x} times {w} summed over {depth} terms may exceed 64 bits")
    if acc_bits not in (32, 64) or (acc_bits == 32 and sum_bits(x, w, depth) > 31):
        raise InferError(f"acc_bits must be 64, or 32 when sums fit in 31 bits ({sum_bits(x, w, depth)} here), "
                         f"got {acc_bits}")


def _matmul_infer(types, a):
    x, w = types
    to = _result(a.to)
    xd, wd = _fx(x), _fx(w, "weight")
    if x.rank < 1 or w.rank != 2 or x.shape[-1] != w.shape[0]:
        raise InferError(f"fx.matmul wants x [.., D] and w [D, H], got {x} and {w}")
    _check_product(xd, wd, to, w.shape[0], a.acc_bits)
    return [TensorType(to, x.shape[:-1] + (w.shape[1],))]


def _conv_infer(types, a):
    from mpc.ir.ops_nn import _conv_infer as nn_conv_infer
    x, w = types
    to = _result(a.to)
    xd, wd = _fx(x), _fx(w, "weight")
    out = nn_conv_infer([TensorType(DType.f32, x.shape), TensorType(DType.f32, w.shape)], a)[0]
    _check_product(xd, wd, to, math.prod(w.shape[1:]), a.acc_bits)
    return [TensorType(to, out.shape)]


def _same_infer(types, a):
    _fx(types[0], limit=MAX_OUT)
    return [types[0]]


def _pool_infer(types, a):
    from mpc.ir.ops_nn import _pool_infer as nn_pool_infer
    _fx(types[0], limit=MAX_OUT)
    return [TensorType(types[0].dtype, nn_pool_infer([TensorType(DType.f32, types[0].shape)], a)[0].shape)]


def _area_bits(kernel) -> int | None:
    """log2 of the window area, or None when the area is not a power of two (the mean is a division)."""
    area = kernel[0] * kernel[1]
    return None if area & (area - 1) else area.bit_length() - 1


def divide_terms(kernel, frac_in: int, frac_out: int) -> tuple[int, int]:
    """(left shift of the sum, divisor) so that the mean at frac_out is round(sum·2^up / divisor)."""
    area = kernel[0] * kernel[1]
    return max(0, frac_out - frac_in), area << max(0, frac_in - frac_out)


def _avgpool_infer(types, a):
    from mpc.ir.ops_nn import PoolAttrs
    from mpc.ir.ops_nn import _pool_infer as nn_pool_infer
    xd = _fx(types[0])
    if _area_bits(a.kernel) is None:   # the division's numerator sum·2^up must stay inside int64
        up = divide_terms(a.kernel, xd.frac, a.to.frac)[0]
        if xd.width + (a.kernel[0] * a.kernel[1]).bit_length() + up + 2 > 62:
            raise InferError(f"the window sum of {xd} shifted by {up} bits to {a.to} needs more than 62 bits")
    shape = nn_pool_infer([TensorType(DType.f32, types[0].shape)], PoolAttrs(a.kernel, a.strides, a.pads))[0].shape
    return [TensorType(_result(a.to), shape)]


def _mp_common(types, a, depth: int) -> None:
    xd, wd = _fx(types[0]), _fx(types[1], "weight")
    _result(a.to)
    if a.gamma < 1:
        raise InferError(f"gamma must be a positive stored integer, got {a.gamma}")
    for t, role in zip(types[2:], ("gain_shift", "gain_sign")):
        if t.dtype != DType.i8 or t.rank != 2 or t.shape[0] != types[1].shape[0]:
            raise InferError(f"{role} must be i8[{types[1].shape[0]},T], got {t}")
    if types[2].shape != types[3].shape:
        raise InferError(f"gain_shift {types[2]} and gain_sign {types[3]} differ in shape")
    common = max(xd.frac - a.c_shift, wd.frac)
    span = max(xd.width + common - (xd.frac - a.c_shift), wd.width + common - wd.frac)
    if span + 2 + max(depth * 2, a.gamma).bit_length() > 62:
        raise InferError(f"operands {xd} and {wd} aligned to {common} fractional bits need more than 62 bits")


def _mp_dot_infer(types, a):
    x, w = types[0], types[1]
    if x.rank < 1 or w.rank != 2 or x.shape[-1] != w.shape[1]:
        raise InferError(f"fx.mp_dot wants x [.., D] and w [H, D], got {x} and {w}")
    _mp_common(types, a, w.shape[1])
    return [TensorType(a.to, x.shape[:-1] + (w.shape[0],))]


def _mp_conv_infer(types, a):
    x, w = types[0], types[1]
    out = _conv_infer([x, w], FxConvAttrs(DType.make("fx", (MAX_OUT, x.dtype.frac + w.dtype.frac)), a.overflow,
                                          a.strides, a.pads, a.dilations, a.group))[0]
    _mp_common(types, a, math.prod(w.shape[1:]))
    return [TensorType(a.to, out.shape)]


def _gain_verify(op, graph) -> None:
    """gain_shift entries are left shifts in [0, 62]; gain_sign entries are -1, 0 or 1."""
    for v, lo, hi, role in ((op.operands[2], 0, MAX_OUT, "gain_shift"), (op.operands[3], -1, 1, "gain_sign")):
        if not v.is_weight:
            raise InferError(f"{role} must be a weight (a compile-time shift-add constant)")
        arr = graph.weights[v.name]
        if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
            raise InferError(f"{role} holds values outside [{lo}, {hi}]")


# -- kernels -------------------------------------------------------------------------------
def _out(k, q):
    to = k.out_types[0].dtype
    if k.tally is not None:
        C.overflow(k.tally, np.asarray(q, dtype=np.int64), to.width, k.attrs.overflow is Overflow.SATURATE)
    return A.overflow(q, to.width, k.attrs.overflow, to.numpy)


def _count_shift(k, size: int, frac_in: int, frac_out: int, rounding: Rounding) -> None:
    if k.tally is not None:
        C.shift(k.tally, size, frac_in - frac_out, rounding is Rounding.NEAREST)


def _quantize(k, x):
    to, a = k.out_types[0].dtype, k.attrs
    return A.from_float(x, to.frac, to.width, a.rounding, a.overflow, to.numpy)


def _cast(k, q):
    _count_shift(k, q.size, k.in_types[0].dtype.frac, k.out_types[0].dtype.frac, k.attrs.rounding)
    return _out(k, A.shift_to(q, k.in_types[0].dtype.frac, k.out_types[0].dtype.frac, k.attrs.rounding))


def _add(k, a, b):
    f = k.out_types[0].dtype.frac
    ta, tb = (t.dtype.frac for t in k.in_types)
    r = k.attrs.rounding
    if k.tally is not None:   # the C shifts both operands for every output element, then adds
        size = int(np.broadcast(a, b).size)
        _count_shift(k, size, ta, f, r)
        _count_shift(k, size, tb, f, r)
        k.tally.add_total("add", size)
    return _out(k, A.shift_to(a, ta, f, r) + A.shift_to(b, tb, f, r))


def _matmul(k, x, w):
    if k.tally is not None:   # every row: D·H products (nnz(w) when sparse), each added to its accumulator
        terms = x.size // max(1, x.shape[-1]) * np.count_nonzero(w) if k.attrs.sparse else x.size * w.shape[1]
        k.tally.add_total("multiply", terms)
        k.tally.add_total("add", terms)
    return _out(k, np.matmul(x.astype(np.int64), w.astype(np.int64)))


def _conv(k, x, w):
    from mpc.ir.ops_nn import folded
    a = k.attrs
    if k.tally is not None:   # in-bounds taps only: the C skips padding (and zero weights when sparse)
        products = math.prod(x.shape[:-3]) * (C.sparse_taps(x.shape, w, a.strides, a.pads, a.dilations) if a.sparse
                                              else w.shape[0] * w.shape[1] *
                                              C.taps(x.shape, w.shape[2:], a.strides, a.pads, a.dilations))
        k.tally.add_total("multiply", products)
        k.tally.add_total("add", products)
    return _out(k, folded(A.conv2d)(x, w, a.strides, a.pads, a.dilations, a.group))


def _maxpool(k, x):
    from mpc.ir.ops_nn import folded
    a = k.attrs
    y = folded(A.maxpool2d)(x, a.kernel, a.strides, a.pads, a.dilations, a.ceil_mode)
    if k.tally is not None:   # v in-bounds taps of a window: v - 1 compares
        taps = C.taps(x.shape, a.kernel, a.strides, a.pads, a.dilations, a.ceil_mode)
        k.tally.add_total("compare", math.prod(x.shape[:-2]) * taps - y.size)
    return y.astype(x.dtype)


def _avgpool(k, x):
    from mpc.ir.ops_nn import folded
    a = k.attrs
    total = folded(A.avgpool2d)(x, a.kernel, a.strides, a.pads, (1, 1))
    if _area_bits(a.kernel) is None:
        return _avgpool_divide(k, x, total)
    frac = k.in_types[0].dtype.frac + _area_bits(a.kernel)   # the sum read at F + log2(area) is the mean
    if k.tally is not None:
        k.tally.add_total("add", math.prod(x.shape[:-2]) * C.taps(x.shape, a.kernel, a.strides, a.pads, (1, 1)))
        _count_shift(k, total.size, frac, a.to.frac, a.rounding)
        C.overflow(k.tally, A.shift_to(total, frac, a.to.frac, a.rounding), a.to.width,
                   a.overflow is Overflow.SATURATE)
    return A.overflow(A.shift_to(total, frac, a.to.frac, a.rounding), a.to.width, a.overflow, a.to.numpy)


def _avgpool_divide(k, x, total):
    """The mean over a window whose area is not a power of two: floor(n / d), or floor((2n + d) / 2d)
    for nearest (ties toward +infinity), with n the sum shifted left to the result's fraction."""
    a = k.attrs
    up, d = divide_terms(a.kernel, k.in_types[0].dtype.frac, a.to.frac)
    n = total.astype(np.int64) << np.int64(up)
    q = (2 * n + d) // (2 * d) if a.rounding is Rounding.NEAREST else n // d
    if k.tally is not None:   # window adds, the shift, the rounding adds and one divide per output
        k.tally.add_total("add", math.prod(x.shape[:-2]) * C.taps(x.shape, a.kernel, a.strides, a.pads, (1, 1)))
        k.tally.add_total("shift", q.size if up else 0)
        k.tally.add_total("add", 2 * q.size if a.rounding is Rounding.NEAREST else 0)
        k.tally.add_total("divide", q.size)
        C.overflow(k.tally, q, a.to.width, a.overflow is Overflow.SATURATE)
    return A.overflow(q, a.to.width, a.overflow, a.to.numpy)


def mp_operands(k, x, w):
    """x and w as int64 at their common fraction (x read as x·2^c_shift), and that fraction."""
    xd, wd = k.in_types[0].dtype, k.in_types[1].dtype
    fx_ = xd.frac - k.attrs.c_shift
    common = max(fx_, wd.frac)
    return x.astype(np.int64) << np.int64(common - fx_), w.astype(np.int64) << np.int64(common - wd.frac)


def _mp_dot(k, x, w, shift, sign):
    xs, ws = mp_operands(k, x, w)
    lead = x.shape[:-1]
    counts = _mp_counts(k, xs.size // x.shape[-1])
    y = A.mp_dot(xs.reshape(-1, x.shape[-1]), ws, k.attrs.gamma, shift, sign, counts)
    if counts is not None:   # the C aligns x and w to the common fraction for every (output, term)
        counts["shift"] += w.size * _align_shifts(k)
        _tally_rows(k, counts)
    return _out(k, y.reshape(lead + (w.shape[0],)))


def _mp_conv(k, x, w, shift, sign):
    from mpc import kernels_np as K
    from mpc.ir.ops_nn import folded
    a = k.attrs
    xs, ws = mp_operands(k, x, w)

    def conv(xx):
        m = ws.shape[0]
        cols, (oh, ow) = K.im2col(xx, ws.shape[2:], a.strides, a.pads, a.dilations, a.group)
        wg, sg, ng = ws.reshape(a.group, m // a.group, -1), shift.reshape(a.group, m // a.group, -1), \
            sign.reshape(a.group, m // a.group, -1)
        counts = _mp_counts(k, cols.shape[1])
        ys = [A.mp_dot(cols[g], wg[g], a.gamma, sg[g], ng[g], counts) for g in range(a.group)]
        if counts is not None:   # x aligned once per patch element and group, w for every output
            sx, sw = _align_amounts(k)
            counts["shift"] += cols.shape[0] * cols.shape[2] * (sx != 0) + ws.size * (sw != 0)
            _tally_rows(k, counts)
        return np.concatenate(ys, axis=1).reshape(xx.shape[0], oh, ow, m).transpose(0, 3, 1, 2)
    return _out(k, np.ascontiguousarray(folded(conv)(xs)))


def _align_amounts(k) -> tuple[int, int]:
    xd, wd = k.in_types[0].dtype, k.in_types[1].dtype
    fx_ = xd.frac - k.attrs.c_shift
    common = max(fx_, wd.frac)
    return common - fx_, common - wd.frac


def _align_shifts(k) -> int:
    sx, sw = _align_amounts(k)
    return int(sx != 0) + int(sw != 0)


def _mp_counts(k, rows: int) -> dict | None:
    """Per-row operation counters for the MP search, or None when nothing is counted."""
    return None if k.tally is None else {kind: np.zeros(rows, np.int64) for kind in C.KINDS}


def _tally_rows(k, counts: dict) -> None:
    for kind, per_row in counts.items():
        k.tally.add(kind, per_row.reshape(k.tally.samples, -1).sum(axis=1))


def _relu(k, x):
    if k.tally is not None:
        k.tally.add_total("compare", x.size)
    return np.maximum(x, x.dtype.type(0))


define("fx.quantize", ("x",), "float to fx<W,F>: round (nearest|floor), then overflow (saturate|wrap)",
       _quantize_infer, _quantize, ConvertAttrs, traits=PURE)
define("fx.dequantize", ("q",), "fx<W,F> to float: q * 2^-F", _dequantize_infer,
       lambda k, q: A.dequantize(q, k.in_types[0].dtype.frac, k.out_types[0].dtype.numpy), DequantAttrs, traits=PURE)
define("fx.cast", ("q",), "requantize: shift to the result's fraction with rounding, then overflow",
       _cast_infer, _cast, ConvertAttrs, traits=PURE)
define("fx.add", ("a", "b"), "a + b at the result's fraction (operands shifted with rounding; broadcasting)",
       _add_infer, _add, ConvertAttrs, traits=PURE)
define("fx.matmul", ("x", "w"), "exact integer x @ w (fraction Fx + Fw), then overflow to the accumulator type",
       _matmul_infer, _matmul, AccumAttrs, traits=PURE)
define("fx.conv2d", ("x", "w"), "exact integer 2-D convolution (fraction Fx + Fw), then overflow",
       _conv_infer, _conv, FxConvAttrs, traits=PURE)
define("fx.relu", ("q",), "max(q, 0)", _same_infer, _relu, traits=PURE)
define("fx.maxpool2d", ("q",), "integer 2-D max pooling", _pool_infer, _maxpool, FxPoolAttrs, traits=PURE)
define("fx.avgpool2d", ("q",), "window sum divided by its area: a rounding shift (power of two) or division (pads count)",
       _avgpool_infer, _avgpool, FxAvgPoolAttrs, traits=PURE)
# Pure but not foldable, like mp.dot: the layer is the multiplierless datapath itself.
define("fx.mp_dot", ("x", "w", "gain_shift", "gain_sign"),
       "integer MP: bisection thresholds of |x+w|, |x-w|; gain as signed shifts of their difference",
       _mp_dot_infer, _mp_dot, FxMPAttrs, verify=_gain_verify, traits=("pure",))
define("fx.mp_conv2d", ("x", "w", "gain_shift", "gain_sign"), "integer MP over the im2col patches of a convolution",
       _mp_conv_infer, _mp_conv, FxMPConvAttrs, verify=_gain_verify, traits=("pure",))

__all__ = ["AccumAttrs", "ConvertAttrs", "DequantAttrs", "FxAvgPoolAttrs", "FxConvAttrs", "FxMPAttrs",
           "FxMPConvAttrs", "FxPoolAttrs", "mp_operands"]
