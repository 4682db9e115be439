"""Tensor, elementwise, logic and reduction op kinds of the `nn` family (ONNX semantics, opset 13+).

Declared here, apart from ops_nn, so that the op families grow in separate modules; the kernels live
in `mpc.tensor.kernels` (the NumPy backend copies them into model.py). Element types: the arithmetic
ops take floats and integers (integers wrap around as ONNX's do), the logic ops take and give `bool`,
comparisons give `bool`, ArgMax/ArgMin give `i64`. ONNX ops that are compositions import as chains:
Sum/Mean/Max/Min with several inputs become binary nn.add / nn.maximum / nn.minimum chains (Mean then
divides by the count), Split becomes one nn.slice per output.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from mpc.ir.opdefs import InferError, define
from mpc.ir.ops_nn import FOLDABLE, _axis, _static
from mpc.ir.types import FLOATS, DType, TensorType, broadcast_shapes
from mpc.tensor import kernels as K

NUMERIC = "a float or integer"


def _check(t: TensorType, allowed: str) -> None:
    """allowed: 'float', 'numeric' (float or integer), 'int' or 'bool'."""
    d = t.dtype
    ok = {"float": d in FLOATS, "numeric": d.kind in ("f", "i", "u"), "int": d.kind in ("i", "u"),
          "bool": d == DType.bool}[allowed]
    if not ok:
        raise InferError(f"operand must be {allowed}, got {t.dtype}")


def _broadcast(*types: TensorType) -> tuple:
    shape = types[0].shape
    for t in types[1:]:
        shape = broadcast_shapes(shape, t.shape)
        if shape is None:
            raise InferError(f"shapes {', '.join(str(x) for x in types)} do not broadcast")
    return shape


# -- elementwise unary --------------------------------------------------------------------
UNARY = {"sqrt": "float", "exp": "float", "log": "float", "reciprocal": "float", "floor": "float",
         "ceil": "float", "round": "float", "abs": "numeric", "neg": "numeric", "sign": "numeric",
         "not": "bool", "bitwise_not": "int", "isnan": "float"}
_UNARY_SUMMARY = {"round": "round half to even", "sign": "-1, 0 or 1", "not": "logical not",
                  "isnan": "true where NaN", "reciprocal": "1 / x", "neg": "-x"}


def _unary_infer(allowed: str, result: DType | None = None):
    def infer(types, a):
        _check(types[0], allowed)
        return [TensorType(result or types[0].dtype, types[0].shape)]
    return infer


def _unary_kernel(name: str):
    return lambda k, x: K.t_unary(name, x)


for _name, _allowed in UNARY.items():
    define(f"nn.{_name}", ("x",), _UNARY_SUMMARY.get(_name, f"elementwise {_name} (ONNX)"),
           _unary_infer(_allowed, DType.bool if _name == "isnan" else None), _unary_kernel(_name),
           traits=FOLDABLE)


@dataclass(frozen=True)
class IsInfAttrs:
    detect_negative: bool = True
    detect_positive: bool = True


define("nn.isinf", ("x",), "true where -inf (detect_negative) or +inf (detect_positive)",
       _unary_infer("float", DType.bool), lambda k, x: K.t_isinf(x, k.attrs.detect_negative,
                                                                  k.attrs.detect_positive),
       IsInfAttrs, traits=FOLDABLE)


# -- elementwise binary -------------------------------------------------------------------
# name -> (operand class, result dtype: None for the operands' dtype)
BINARY = {"maximum": ("numeric", None), "minimum": ("numeric", None), "and": ("bool", None),
          "or": ("bool", None), "xor": ("bool", None), "bitwise_and": ("int", None), "bitwise_or": ("int", None),
          "bitwise_xor": ("int", None), "shift_left": ("int", None), "shift_right": ("int", None),
          "equal": ("any", DType.bool), "less": ("numeric", DType.bool), "greater": ("numeric", DType.bool),
          "less_equal": ("numeric", DType.bool), "greater_equal": ("numeric", DType.bool)}


def _binary_infer(allowed: str, result: DType | None):
    def infer(types, a):
        x, y = types
        if x.dtype != y.dtype:
            raise InferError(f"operand dtypes differ: {x.dtype} vs {y.dtype}")
        if x.dtype.is_fixed:
            raise InferError(f"nn ops on fixed point {x.dtype} are not defined (use an fx op)")
        if allowed != "any":
            _check(x, allowed)
        return [TensorType(result or x.dtype, _broadcast(x, y))]
    return infer


def _binary_kernel(name: str):
    return lambda k, x, y: K.t_binary(name, x, y)


for _name, (_allowed, _result) in BINARY.items():
    define(f"nn.{_name}", ("a", "b"), f"elementwise {_name.replace('_', ' ')} (broadcasting)",
           _binary_infer(_allowed, _result), _binary_kernel(_name), traits=FOLDABLE)


@dataclass(frozen=True)
class ModAttrs:
    fmod: bool = False


def _pow_infer(types, a):
    for t in types:
        _check(t, "numeric")
    return [types[0].with_shape(_broadcast(*types))]


define("nn.mod", ("a", "b"), "remainder: sign of the divisor, or of the dividend with fmod (ONNX Mod)",
       _binary_infer("numeric", None), lambda k, a, b: K.t_mod(a, b, k.attrs.fmod), ModAttrs, traits=FOLDABLE)
define("nn.pow", ("base", "exponent"), "base ** exponent in the base's dtype (ONNX Pow, mixed dtypes)",
       _pow_infer, lambda k, a, b: K.t_pow(a, b), traits=FOLDABLE)


def _where_infer(types, a):
    c, x, y = types
    _check(c, "bool")
    if x.dtype != y.dtype:
        raise InferError(f"operand dtypes differ: {x.dtype} vs {y.dtype}")
    return [x.with_shape(_broadcast(c, x, y))]


define("nn.where", ("cond", "a", "b"), "a where cond, else b (broadcasting; ONNX Where)", _where_infer,
       lambda k, c, a, b: K.t_where(c, a, b), traits=FOLDABLE)


# -- reductions ---------------------------------------------------------------------------
class ReduceMode(enum.Enum):
    """What nn.reduce computes (ONNX Reduce<Mode>)."""

    SUM = "sum"
    MEAN = "mean"
    MAX = "max"
    MIN = "min"
    PROD = "prod"
    L1 = "l1"
    L2 = "l2"
    LOG_SUM = "log_sum"
    LOG_SUM_EXP = "log_sum_exp"
    SUM_SQUARE = "sum_square"


FLOAT_ONLY_MODES = (ReduceMode.MEAN, ReduceMode.L2, ReduceMode.LOG_SUM, ReduceMode.LOG_SUM_EXP)


@dataclass(frozen=True)
class ReduceAttrs:
    mode: ReduceMode
    axes: tuple[int, ...] = ()
    keepdims: bool = True


def _reduced_shape(x: TensorType, axes, keepdims: bool) -> tuple:
    given = axes
    axes = [_axis(a, x.rank, "axes") for a in axes] if axes else list(range(x.rank))
    if len(axes) != len(set(axes)):
        raise InferError(f"repeated axes {list(given)}")
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    return tuple(d for i, d in enumerate(x.shape) if i not in axes)


def _reduce_infer(types, a):
    x = types[0]
    if not (x.dtype == DType.bool and a.mode in (ReduceMode.MAX, ReduceMode.MIN)):   # bool max/min: any/all
        _check(x, "float" if a.mode in FLOAT_ONLY_MODES else "numeric")
    return [x.with_shape(_reduced_shape(x, a.axes, a.keepdims))]


define("nn.reduce", ("x",), "reduce over axes (all when empty) by mode (ONNX Reduce*)", _reduce_infer,
       lambda k, x: K.t_reduce(x, k.attrs.mode.value, k.attrs.axes, k.attrs.keepdims), ReduceAttrs,
       traits=FOLDABLE)


@dataclass(frozen=True)
class ArgReduceAttrs:
    largest: bool = True
    axis: int = 0
    keepdims: bool = True
    select_last_index: bool = False


def _arg_infer(types, a):
    x = types[0]
    _check(x, "numeric")
    if x.rank == 0:
        raise InferError("argmax/argmin of a 0-d tensor")
    return [TensorType(DType.i64, _reduced_shape(x, (a.axis,), a.keepdims))]


define("nn.arg_reduce", ("x",), "int64 index of the max (largest) or min along an axis (ONNX ArgMax/ArgMin)",
       _arg_infer, lambda k, x: K.t_arg_reduce(x, k.attrs.largest, k.attrs.axis, k.attrs.keepdims,
                                                k.attrs.select_last_index), ArgReduceAttrs, traits=FOLDABLE)


# -- data movement ------------------------------------------------------------------------
@dataclass(frozen=True)
class ExpandAttrs:
    shape: tuple[int, ...]


@dataclass(frozen=True)
class TileAttrs:
    repeats: tuple[int, ...]


@dataclass(frozen=True)
class SliceAttrs:
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    axes: tuple[int, ...]
    steps: tuple[int, ...]


@dataclass(frozen=True)
class GatherAttrs:
    axis: int = 0


class PadMode(enum.Enum):
    """How nn.pad fills (ONNX Pad's mode)."""

    CONSTANT = "constant"
    REFLECT = "reflect"
    EDGE = "edge"
    WRAP = "wrap"


@dataclass(frozen=True)
class PadAttrs:
    pads: tuple[int, ...]
    mode: PadMode = PadMode.CONSTANT
    value: float = 0.0


def _expand_infer(types, a):
    if any(d < 0 for d in a.shape):
        raise InferError(f"expand shape {list(a.shape)} has a negative dim")
    shape = broadcast_shapes(types[0].shape, a.shape)
    if shape is None:
        raise InferError(f"{types[0]} does not broadcast with shape {list(a.shape)}")
    return [types[0].with_shape(shape)]


def _tile_infer(types, a):
    x = types[0]
    if len(a.repeats) != x.rank or any(r < 0 for r in a.repeats):
        raise InferError(f"repeats {list(a.repeats)} must be {x.rank} non-negative ints")
    dims = [d if r == 1 else d * r if isinstance(d, int) else None for d, r in zip(x.shape, a.repeats)]
    if None in dims:
        raise InferError(f"tiling a symbolic dim of {x} is not supported")
    return [x.with_shape(tuple(dims))]


def _slice_dim(d, s: int, e: int, st: int):
    if isinstance(d, str):
        if (s, st) == (0, 1) and e >= 2**31 - 1:
            return d   # the whole of a symbolic dim
        raise InferError(f"slicing symbolic dim '{d}' (other than whole) is not supported")
    lo, hi = K.t_slice_bounds(d, s, e, st)
    return len(range(lo, hi, st)) if hi >= 0 else len(range(lo, -1, st))


def _slice_infer(types, a):
    x = types[0]
    n = len(a.starts)
    if not len(a.ends) == len(a.axes) == len(a.steps) == n:
        raise InferError("starts, ends, axes and steps must have the same length")
    if any(st == 0 for st in a.steps) or len({_axis(ax, x.rank, "axes") for ax in a.axes}) != n:
        raise InferError(f"steps {list(a.steps)} must be non-zero and axes {list(a.axes)} distinct")
    dims = list(x.shape)
    for s, e, ax, st in zip(a.starts, a.ends, a.axes, a.steps):
        dims[ax % x.rank] = _slice_dim(dims[ax % x.rank], s, e, st)
    return [x.with_shape(tuple(dims))]


def _gather_infer(types, a):
    x, idx = types
    _check(idx, "int")
    ax = _axis(a.axis, x.rank)
    return [x.with_shape(x.shape[:ax] + idx.shape + x.shape[ax + 1:])]


def _gather_elements_infer(types, a):
    x, idx = types
    _check(idx, "int")
    if x.rank != idx.rank:
        raise InferError(f"data {x} and indices {idx} must have the same rank")
    _axis(a.axis, x.rank)
    return [x.with_shape(idx.shape)]


def _pad_infer(types, a):
    x = types[0]
    if len(a.pads) != 2 * x.rank or any(p < 0 for p in a.pads):
        raise InferError(f"pads {list(a.pads)} must be {2 * x.rank} non-negative ints")
    padded = [i for i in range(x.rank) if a.pads[i] or a.pads[i + x.rank]]
    _static([x.shape[i] for i in padded], "padded dims")
    dims = tuple(d + a.pads[i] + a.pads[i + x.rank] if i in padded else d for i, d in enumerate(x.shape))
    if a.mode == PadMode.REFLECT and any(x.shape[i] < 2 for i in padded):
        raise InferError(f"reflect padding needs at least 2 entries along each padded dim, got {x}")
    return [x.with_shape(dims)]


define("nn.expand", ("x",), "broadcast to a constant shape, both ways (ONNX Expand)", _expand_infer,
       lambda k, x: K.t_expand(x, k.attrs.shape), ExpandAttrs, traits=FOLDABLE)
define("nn.tile", ("x",), "repeat along each dim (ONNX Tile)", _tile_infer,
       lambda k, x: K.t_tile(x, k.attrs.repeats), TileAttrs, traits=FOLDABLE)
define("nn.slice", ("x",), "strided slice with clamped bounds (ONNX Slice)", _slice_infer,
       lambda k, x: K.t_slice(x, k.attrs.starts, k.attrs.ends, [ax % x.ndim for ax in k.attrs.axes],
                              k.attrs.steps), SliceAttrs, traits=FOLDABLE)
define("nn.gather", ("x", "indices"), "entries along an axis at indices (ONNX Gather)", _gather_infer,
       lambda k, x, i: K.t_gather(x, i, k.attrs.axis), GatherAttrs, traits=FOLDABLE)
define("nn.gather_elements", ("x", "indices"), "entries at per-position indices along an axis (ONNX "
       "GatherElements)", _gather_elements_infer, lambda k, x, i: K.t_gather_elements(x, i, k.attrs.axis),
       GatherAttrs, traits=FOLDABLE)
define("nn.pad", ("x",), "pad each dim by [begins..., ends...] (ONNX Pad)", _pad_infer,
       lambda k, x: K.t_pad(x, k.attrs.pads, k.attrs.mode.value, k.attrs.value), PadAttrs, traits=FOLDABLE)
