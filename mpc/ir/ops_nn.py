"""The `nn` op family: the float operators ONNX models are imported into.

Each op is declared once (operands, attributes, type inference, reference NumPy kernel);
semantics follow the ONNX operator of the same name (opset 13+), with defaults resolved by
the frontend where ONNX has several spellings (auto_pad becomes explicit pads, for example).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mpc import kernels_np as K
from mpc.ir.opdefs import InferError, define
from mpc.ir.types import FLOATS, DType, TensorType, broadcast_shapes

# Every nn op is pure (inference semantics: dropout is the identity, batchnorm uses its running
# statistics) and, but for nn.identity, foldable: on weights it computes a new weight.
PURE = frozenset({"pure"})
FOLDABLE = frozenset({"pure", "foldable"})


# -- type inference helpers ---------------------------------------------------------------
def _float(t: TensorType, role: str = "operand") -> None:
    if t.dtype not in FLOATS:
        raise InferError(f"{role} must be f16, f32 or f64, got {t.dtype}")


def _unary(types, attrs):
    _float(types[0])
    return [types[0]]


def _binary(types, attrs):
    a, b = types
    if a.dtype != b.dtype:
        raise InferError(f"operand dtypes differ: {a.dtype} vs {b.dtype}")
    if a.dtype.is_fixed:  # stored-integer arithmetic would drop the scale; fx ops state rounding/overflow
        raise InferError(f"nn arithmetic on fixed point {a.dtype} is not defined (use an fx op)")
    shape = broadcast_shapes(a.shape, b.shape)
    if shape is None:
        raise InferError(f"shapes {a} and {b} do not broadcast")
    return [a.with_shape(shape)]


def _axis(axis: int, rank: int, name: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1):
        raise InferError(f"{name} {axis} out of range for rank {rank}")
    return axis % rank if rank else 0


def _static(dims, what: str):
    for d in dims:
        if not isinstance(d, int):
            raise InferError(f"{what} must be static, got symbolic dim '{d}'")


# -- elementwise --------------------------------------------------------------------------
@dataclass(frozen=True)
class LeakyReluAttrs:
    alpha: float = 0.01


@dataclass(frozen=True)
class ClipAttrs:
    min: float = -math.inf
    max: float = math.inf


@dataclass(frozen=True)
class AxisAttrs:
    axis: int = -1


@dataclass(frozen=True)
class DropoutAttrs:
    ratio: float = 0.5


@dataclass(frozen=True)
class CastAttrs:
    to: DType = DType.f32


def _softmax_infer(types, a):
    _float(types[0])
    _axis(a.axis, types[0].rank)
    return [types[0]]


def _clip_infer(types, a):
    _float(types[0])
    if a.min > a.max:
        raise InferError(f"clip min {a.min} > max {a.max}")
    return [types[0]]


def _cast_infer(types, a):
    if a.to.is_fixed:
        raise InferError(f"cast to fixed point {a.to} is not defined (use an fx op)")
    if types[0].dtype.is_fixed:  # the kernel would convert the stored integer, not the real value
        raise InferError(f"cast from fixed point {types[0].dtype} is not defined (use an fx op)")
    return [TensorType(a.to, types[0].shape)]


def _clip(k, x):
    return np.clip(x, x.dtype.type(k.attrs.min), x.dtype.type(k.attrs.max))


def _elementwise(fn):
    """The kernel of a broadcasting binary op."""
    return lambda k, x, y: fn(x, y)


for _k, _fn, _s in [("nn.add", np.add, "elementwise a + b (broadcasting)"),
                    ("nn.sub", np.subtract, "elementwise a - b (broadcasting)"),
                    ("nn.mul", np.multiply, "elementwise a * b (broadcasting)"),
                    ("nn.div", K.div, "elementwise a / b (broadcasting; integers truncate toward zero)")]:
    define(_k, ("a", "b"), _s, _binary, _elementwise(_fn), traits=FOLDABLE)

define("nn.relu", ("x",), "max(x, 0)", _unary, lambda k, x: np.maximum(x, x.dtype.type(0)), traits=FOLDABLE)
define("nn.leaky_relu", ("x",), "x if x >= 0 else alpha * x", _unary,
       lambda k, x: np.where(x >= 0, x, x * x.dtype.type(k.attrs.alpha)), LeakyReluAttrs, traits=FOLDABLE)
define("nn.sigmoid", ("x",), "1 / (1 + exp(-x))", _unary, lambda k, x: K.sigmoid(x), traits=FOLDABLE)
define("nn.tanh", ("x",), "hyperbolic tangent", _unary, lambda k, x: np.tanh(x), traits=FOLDABLE)
define("nn.softmax", ("x",), "softmax along one axis", _softmax_infer,
       lambda k, x: K.softmax(x, k.attrs.axis), AxisAttrs, traits=FOLDABLE)
define("nn.clip", ("x",), "clamp to [min, max]", _clip_infer, _clip, ClipAttrs, traits=FOLDABLE)
# not foldable: an identity is what keeps a graph output distinct from a weight (see fold-constants)
define("nn.identity", ("x",), "the operand unchanged", lambda t, a: [t[0]], lambda k, x: x, traits=PURE)
define("nn.dropout", ("x",), "inference-mode dropout (identity)", lambda t, a: [t[0]], lambda k, x: x,
       DropoutAttrs, traits=FOLDABLE)
define("nn.cast", ("x",), "convert to another element type (ONNX Cast)", _cast_infer,
       lambda k, x: x.astype(k.out_types[0].dtype.numpy), CastAttrs, traits=FOLDABLE)


# -- matmul, gemm -------------------------------------------------------------------------
def _matmul_infer(types, a):
    x, w = types
    _float(x)
    if x.dtype != w.dtype:
        raise InferError(f"operand dtypes differ: {x.dtype} vs {w.dtype}")
    if x.rank == 0 or w.rank == 0:
        raise InferError("matmul operands must have rank >= 1")
    xs = (1,) + x.shape if x.rank == 1 else x.shape
    ws = w.shape + (1,) if w.rank == 1 else w.shape
    if xs[-1] != ws[-2]:
        raise InferError(f"inner dims differ: {x} @ {w}")
    batch = broadcast_shapes(xs[:-2], ws[:-2])
    if batch is None:
        raise InferError(f"batch dims of {x} and {w} do not broadcast")
    out = batch + (xs[-2], ws[-1])
    if x.rank == 1:
        out = out[:-2] + out[-1:]
    if w.rank == 1:
        out = out[:-1]
    return [x.with_shape(out)]


@dataclass(frozen=True)
class GemmAttrs:
    alpha: float = 1.0
    beta: float = 1.0
    trans_a: bool = False
    trans_b: bool = False


def _gemm_infer(types, a):
    x, w = types[0], types[1]
    _float(x)
    if x.rank != 2 or w.rank != 2:
        raise InferError(f"gemm operands must be 2-D, got {x} and {w}")
    m, k = x.shape[::-1] if a.trans_a else x.shape
    k2, n = w.shape[::-1] if a.trans_b else w.shape
    if k != k2:
        raise InferError(f"inner dims differ: {k} vs {k2}")
    out = (m, n)
    if len(types) == 3 and broadcast_shapes(types[2].shape, out) != out:
        raise InferError(f"bias {types[2]} does not broadcast to {out}")
    return [x.with_shape(out)]


def _gemm(k, x, w, c=None):
    a = k.attrs
    return K.gemm(x, w, c, a.alpha, a.beta, a.trans_a, a.trans_b)


def _matmul(k, x, w):
    if x.ndim > 2 and w.ndim == 2:   # leading dims (time-major T·N rows): one 2-D product, not T small ones
        return np.matmul(x.reshape(-1, x.shape[-1]), w).reshape(x.shape[:-1] + w.shape[-1:])
    return np.matmul(x, w)


define("nn.matmul", ("a", "b"), "matrix product with NumPy/ONNX MatMul semantics", _matmul_infer,
       _matmul, traits=FOLDABLE)
define("nn.gemm", ("a", "b", "c?"), "alpha * op(a) @ op(b) + beta * c (ONNX Gemm)", _gemm_infer, _gemm,
       GemmAttrs, traits=FOLDABLE)


# -- convolution and pooling --------------------------------------------------------------
@dataclass(frozen=True)
class ConvAttrs:
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilations: tuple[int, int] = (1, 1)
    group: int = 1


@dataclass(frozen=True)
class PoolAttrs:
    kernel: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilations: tuple[int, int] = (1, 1)
    ceil_mode: bool = False
    count_include_pad: bool = False


def _check_window(a, k) -> None:
    if any(s < 1 for s in a.strides) or any(d < 1 for d in a.dilations) or any(p < 0 for p in a.pads):
        raise InferError("strides and dilations must be >= 1 and pads >= 0")
    if any(v < 1 for v in k):
        raise InferError(f"kernel {k} must be >= 1")


def _spatial(x: TensorType, a, k, ceil_mode=False) -> tuple[int, int]:
    _static(x.shape[-2:], "spatial dims")
    _check_window(a, k)
    try:
        return tuple(K.pool_out_size(x.shape[-2 + i], k[i], a.strides[i], a.pads[i], a.pads[i + 2],
                                     a.dilations[i], ceil_mode) for i in range(2))
    except ValueError as e:
        raise InferError(str(e)) from None


def folded(kernel):
    """A [N,C,H,W] kernel that also takes [..., N, C, H, W]: leading dims (time-major T) join the batch."""
    def run(x, *rest):
        if x.ndim == 4:
            return kernel(x, *rest)
        lead = x.shape[:-3]
        y = kernel(x.reshape((math.prod(lead),) + x.shape[-3:]), *rest)
        return y.reshape(lead + y.shape[1:])
    return run


def _conv_infer(types, a):
    x, w = types[0], types[1]
    _float(x)
    if x.rank < 4 or w.rank != 4:
        raise InferError(f"conv2d wants input [..,N,C,H,W] and a 4-D weight, got {x} and {w}")
    _static(w.shape, "conv weight shape")
    m, cg = w.shape[:2]
    if a.group < 1 or x.shape[-3] != cg * a.group or m % a.group:
        raise InferError(f"channels {x.shape[-3]} do not match weight {w} with group={a.group}")
    if len(types) == 3 and types[2].shape != (m,):
        raise InferError(f"conv bias must be [{m}], got {types[2]}")
    oh, ow = _spatial(x, a, w.shape[2:])
    return [x.with_shape(x.shape[:-3] + (m, oh, ow))]


def _pool_infer(types, a):
    x = types[0]
    _float(x)
    if x.rank < 4:
        raise InferError(f"2-D pooling wants input [..,N,C,H,W], got {x}")
    oh, ow = _spatial(x, a, a.kernel, a.ceil_mode)
    return [x.with_shape(x.shape[:-2] + (oh, ow))]


def _gap_infer(types, a):
    x = types[0]
    _float(x)
    if x.rank < 3:
        raise InferError(f"global_avgpool wants rank >= 3, got {x}")
    return [x.with_shape(x.shape[:2] + (1,) * (x.rank - 2))]


def _conv(k, x, w, b=None):
    a = k.attrs
    return folded(K.conv2d)(x, w, b, a.strides, a.pads, a.dilations, a.group)


def _maxpool(k, x):
    a = k.attrs
    return folded(K.maxpool2d)(x, a.kernel, a.strides, a.pads, a.dilations, a.ceil_mode)


def _avgpool(k, x):
    a = k.attrs
    return folded(K.avgpool2d)(x, a.kernel, a.strides, a.pads, a.dilations, a.ceil_mode, a.count_include_pad)


def _global_avgpool(k, x):
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True, dtype=np.float64).astype(x.dtype)


define("nn.conv2d", ("x", "w", "b?"), "2-D convolution, [..,N]CHW, weights MCkk (ONNX Conv)", _conv_infer,
       _conv, ConvAttrs, traits=FOLDABLE)
define("nn.maxpool2d", ("x",), "2-D max pooling, [..,N]CHW (ONNX MaxPool)", _pool_infer, _maxpool, PoolAttrs,
       traits=FOLDABLE)
define("nn.avgpool2d", ("x",), "2-D average pooling, [..,N]CHW (ONNX AveragePool)", _pool_infer, _avgpool,
       PoolAttrs, traits=FOLDABLE)
define("nn.global_avgpool", ("x",), "mean over all spatial dims, kept as size 1", _gap_infer, _global_avgpool,
       traits=FOLDABLE)


# -- normalization ------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchNormAttrs:
    epsilon: float = 1e-5


def _bn_infer(types, a):
    x = types[0]
    _float(x)
    if x.rank < 2:
        raise InferError(f"batchnorm wants rank >= 2, got {x}")
    for t, role in zip(types[1:], ("scale", "bias", "mean", "var")):
        if t.shape != (x.shape[1],):
            raise InferError(f"batchnorm {role} must be [{x.shape[1]}], got {t}")
    return [x]


define("nn.batchnorm", ("x", "scale", "bias", "mean", "var"), "inference BatchNormalization over axis 1",
       _bn_infer,
       lambda k, x, *p: K.batchnorm(x, *p, k.attrs.epsilon), BatchNormAttrs, traits=FOLDABLE)


# -- shape ops ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FlattenAttrs:
    axis: int = 1


@dataclass(frozen=True)
class ReshapeAttrs:
    shape: tuple[int, ...]


@dataclass(frozen=True)
class PermAttrs:
    perm: tuple[int, ...]


@dataclass(frozen=True)
class AxesAttrs:
    axes: tuple[int, ...]


def _product(dims) -> tuple[int, list[str]]:
    n, syms = 1, []
    for d in dims:
        if isinstance(d, int):
            n *= d
        else:
            syms.append(d)
    return n, sorted(syms)


def _merge(dims):
    n, syms = _product(dims)
    if not syms:
        return n
    if n == 1 and len(syms) == 1:
        return syms[0]
    raise InferError(f"cannot merge dims {list(dims)} into one (symbolic product)")


def _flatten_axis(axis: int, rank: int) -> int:
    if not -rank <= axis <= rank:
        raise InferError(f"axis {axis} out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def _flatten_infer(types, a):
    x = types[0]
    ax = _flatten_axis(a.axis, x.rank)
    return [x.with_shape((_merge(x.shape[:ax]), _merge(x.shape[ax:])))]


def _reshape_dims(shape_in, target):
    if sum(1 for d in target if d == -1) > 1 or any(d < -1 for d in target):
        raise InferError(f"bad reshape target {list(target)}")
    out = []
    for i, d in enumerate(target):
        if d == 0:
            if i >= len(shape_in):
                raise InferError(f"reshape 0 at position {i} beyond input rank {len(shape_in)}")
            out.append(shape_in[i])
        else:
            out.append(d)
    n_in, s_in = _product(shape_in)
    n_out, s_out = _product([d for d in out if d != -1])
    rest = list(s_in)
    for s in s_out:
        if s not in rest:
            raise InferError(f"reshape of {list(shape_in)} to {list(target)}: symbolic dims do not match")
        rest.remove(s)
    if -1 not in out:
        if rest or n_in != n_out:
            raise InferError(f"cannot reshape {list(shape_in)} to {list(target)}")
        return tuple(out)
    if n_out == 0 or n_in % n_out or (rest and (len(rest) > 1 or n_in != n_out)):
        raise InferError(f"cannot reshape {list(shape_in)} to {list(target)}")
    fill = rest[0] if rest else n_in // n_out
    return tuple(fill if d == -1 else d for d in out)


def _reshape(k, x):
    return x.reshape([x.shape[i] if d == 0 else d for i, d in enumerate(k.attrs.shape)])


def _transpose_infer(types, a):
    x = types[0]
    if sorted(a.perm) != list(range(x.rank)):
        raise InferError(f"perm {list(a.perm)} is not a permutation of {x.rank} dims")
    return [x.with_shape(tuple(x.shape[p] for p in a.perm))]


def _concat_infer(types, a):
    first = types[0]
    ax = _axis(a.axis, first.rank)
    total = 0
    for t in types:
        if t.dtype != first.dtype or t.rank != first.rank:
            raise InferError(f"concat operands differ: {first} vs {t}")
        if any(t.shape[i] != first.shape[i] for i in range(t.rank) if i != ax):
            raise InferError(f"concat operands differ outside axis {a.axis}: {first} vs {t}")
        if not isinstance(t.shape[ax], int):
            raise InferError(f"concat along symbolic dim '{t.shape[ax]}'")
        total += t.shape[ax]
    return [first.with_shape(first.shape[:ax] + (total,) + first.shape[ax + 1:])]


def _squeeze_axes(a, rank):
    axes = sorted({_axis(x, rank, "axes") for x in a.axes})
    if len(axes) != len(a.axes):
        raise InferError(f"repeated axes {list(a.axes)}")
    return axes


def _squeeze_infer(types, a):
    x = types[0]
    axes = _squeeze_axes(a, x.rank)
    for ax in axes:
        if x.shape[ax] != 1:
            raise InferError(f"cannot squeeze axis {ax} of size {x.shape[ax]}")
    return [x.with_shape(tuple(d for i, d in enumerate(x.shape) if i not in axes))]


def _unsqueeze_infer(types, a):
    x = types[0]
    axes = _squeeze_axes(a, x.rank + len(a.axes))
    dims = list(x.shape)
    for ax in axes:
        dims.insert(ax, 1)
    return [x.with_shape(tuple(dims))]


def _unsqueeze(k, x):
    return np.expand_dims(x, tuple(_squeeze_axes(k.attrs, x.ndim + len(k.attrs.axes))))


define("nn.flatten", ("x",), "collapse to 2-D at axis (ONNX Flatten)", _flatten_infer,
       lambda k, x: x.reshape(int(np.prod(x.shape[:_flatten_axis(k.attrs.axis, x.ndim)])), -1), FlattenAttrs,
       traits=FOLDABLE)
define("nn.reshape", ("x",), "reshape to a constant shape (0 copies a dim, -1 infers one)",
       lambda t, a: [t[0].with_shape(_reshape_dims(t[0].shape, a.shape))], _reshape, ReshapeAttrs, traits=FOLDABLE)
define("nn.transpose", ("x",), "permute dims", _transpose_infer, lambda k, x: np.transpose(x, k.attrs.perm),
       PermAttrs, traits=FOLDABLE)
define("nn.concat", ("xs*",), "join along an axis", _concat_infer,
       lambda k, *xs: np.concatenate(xs, axis=k.attrs.axis), AxisAttrs, traits=FOLDABLE)
define("nn.squeeze", ("x",), "drop size-1 dims", _squeeze_infer,
       lambda k, x: np.squeeze(x, tuple(_squeeze_axes(k.attrs, x.ndim))), AxesAttrs, traits=FOLDABLE)
define("nn.unsqueeze", ("x",), "insert size-1 dims", _unsqueeze_infer, _unsqueeze, AxesAttrs, traits=FOLDABLE)
