"""The `nn` spatial, normalization and activation ops with any number of spatial dims.

Semantics follow the ONNX operator of the same name (opset 13+); the kernels live in
`mpc.kernels_spatial`. Rank-generic window ops (`nn.conv`, `nn.maxpool`, `nn.avgpool`, ...) take
[N, C, D1..Dn] with n = 1, 2 or 3 and per-dim attribute tuples (pads: n begins, then n ends). The
ONNX frontend keeps 2-D Conv/MaxPool/AveragePool on `nn.conv2d`/`nn.maxpool2d`/`nn.avgpool2d`, which
the MP target, the fused conv epilogue and the compiled kernels know; it uses these kinds for 1-D
and 3-D, for MaxPool's Indices output and for the ops the 2-D kinds do not have.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from mpc import kernels_spatial as S
from mpc.ir.opdefs import InferError, define
from mpc.ir.ops_nn import FOLDABLE, _axis, _float, _static
from mpc.ir.types import DType, TensorType, broadcast_shapes


# -- windows ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvNdAttrs:
    strides: tuple[int, ...]
    pads: tuple[int, ...]
    dilations: tuple[int, ...]
    group: int = 1


@dataclass(frozen=True)
class PoolNdAttrs:
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[int, ...]
    dilations: tuple[int, ...]
    ceil_mode: bool = False


@dataclass(frozen=True)
class AvgPoolNdAttrs:
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[int, ...]
    dilations: tuple[int, ...]
    ceil_mode: bool = False
    count_include_pad: bool = False


@dataclass(frozen=True)
class MaxPoolIndicesAttrs:
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[int, ...]
    dilations: tuple[int, ...]
    ceil_mode: bool = False
    storage_order: int = 0   # how Indices flatten the spatial dims: 0 row-major, 1 column-major


@dataclass(frozen=True)
class ConvTransposeAttrs:
    strides: tuple[int, ...]
    pads: tuple[int, ...]
    dilations: tuple[int, ...]
    output_padding: tuple[int, ...]
    group: int = 1


def _window(x: TensorType, a, kernel, ceil_mode=False) -> tuple[int, ...]:
    """Spatial output sizes, checking ranks and values of the per-dim attributes."""
    n = len(kernel)
    if not 1 <= n <= 3 or x.rank != n + 2:
        raise InferError(f"{n}-D window wants input [N,C + {n} spatial dims], got {x}")
    if (len(a.strides), len(a.dilations), len(a.pads)) != (n, n, 2 * n):
        raise InferError(f"strides and dilations need {n} values and pads {2 * n}")
    if min(a.strides) < 1 or min(a.dilations) < 1 or min(kernel) < 1:
        raise InferError("strides, dilations and kernel must be >= 1")
    _static(x.shape[2:], "spatial dims")
    try:
        return tuple(S.window_out(x.shape[2 + i], kernel[i], a.strides[i], a.pads[i], a.pads[i + n],
                                  a.dilations[i], ceil_mode) for i in range(n))
    except ValueError as e:
        raise InferError(str(e)) from None


def _conv_infer(types, a):
    x, w = types[0], types[1]
    _float(x)
    _static(w.shape, "conv weight shape")
    if w.rank < 3 or x.dtype != w.dtype:
        raise InferError(f"conv wants a weight [M, C/group, k...] of the input's dtype, got {w}")
    m, cg = w.shape[:2]
    if a.group < 1 or x.shape[1] != cg * a.group or m % a.group:
        raise InferError(f"channels {x.shape[1]} do not match weight {w} with group={a.group}")
    if min(a.pads) < 0:
        raise InferError("pads must be >= 0")
    if len(types) == 3 and types[2].shape != (m,):
        raise InferError(f"conv bias must be [{m}], got {types[2]}")
    return [x.with_shape(x.shape[:1] + (m,) + _window(x, a, w.shape[2:]))]


def _pool_infer(types, a):
    _float(types[0])
    if min(a.pads) < 0:
        raise InferError("pads must be >= 0")
    return [types[0].with_shape(types[0].shape[:2] + _window(types[0], a, a.kernel, a.ceil_mode))]


def _pool_indices_infer(types, a):
    y = _pool_infer(types, a)[0]
    if a.storage_order not in (0, 1):
        raise InferError(f"storage_order must be 0 or 1, got {a.storage_order}")
    return [y, TensorType(DType.i64, y.shape)]


def _conv_transpose_infer(types, a):
    x, w = types[0], types[1]
    _float(x)
    _static(w.shape, "conv_transpose weight shape")
    n = w.rank - 2
    if not 1 <= n <= 3 or x.rank != n + 2 or x.dtype != w.dtype:
        raise InferError(f"conv_transpose wants input [N,C,{n} dims] and weight [C, M/group, k...], got {x} and {w}")
    _static(x.shape[2:], "spatial dims")
    if (len(a.strides), len(a.dilations), len(a.pads), len(a.output_padding)) != (n, n, 2 * n, n):
        raise InferError(f"strides, dilations and output_padding need {n} values and pads {2 * n}")
    if a.group < 1 or x.shape[1] != w.shape[0] or w.shape[0] % a.group:
        raise InferError(f"channels {x.shape[1]} do not match weight {w} with group={a.group}")
    m = w.shape[1] * a.group
    if len(types) == 3 and types[2].shape != (m,):
        raise InferError(f"conv_transpose bias must be [{m}], got {types[2]}")
    out = tuple((x.shape[2 + i] - 1) * a.strides[i] + (w.shape[2 + i] - 1) * a.dilations[i] + 1
                + a.output_padding[i] - a.pads[i] - a.pads[i + n] for i in range(n))
    if min(out) < 1:
        raise InferError(f"conv_transpose output size {list(out)} must be >= 1")
    return [x.with_shape(x.shape[:1] + (m,) + out)]


def _global_infer(types, a):
    _float(types[0])
    if types[0].rank < 3:
        raise InferError(f"global pooling wants rank >= 3, got {types[0]}")
    return [types[0].with_shape(types[0].shape[:2] + (1,) * (types[0].rank - 2))]


def _conv(k, x, w, b=None):
    a = k.attrs
    return S.conv_nd(x, w, b, a.strides, a.pads, a.dilations, a.group)


def _pool_args(a):
    return a.kernel, a.strides, a.pads, a.dilations, a.ceil_mode


define("nn.conv", ("x", "w", "b?"), "N-D convolution (N = 1, 2, 3), weights [M, C/group, k...] (ONNX Conv)",
       _conv_infer, _conv, ConvNdAttrs, traits=FOLDABLE)
define("nn.maxpool", ("x",), "N-D max pooling (ONNX MaxPool)", _pool_infer,
       lambda k, x: S.maxpool_nd(x, *_pool_args(k.attrs)), PoolNdAttrs, traits=FOLDABLE)
define("nn.maxpool_indices", ("x",), "N-D max pooling and the flat index of each max (ONNX MaxPool's Indices)",
       _pool_indices_infer, lambda k, x: S.maxpool_indices(x, *_pool_args(k.attrs), k.attrs.storage_order),
       MaxPoolIndicesAttrs, results=2, traits=FOLDABLE)
define("nn.avgpool", ("x",), "N-D average pooling (ONNX AveragePool)", _pool_infer,
       lambda k, x: S.avgpool_nd(x, *_pool_args(k.attrs), k.attrs.count_include_pad), AvgPoolNdAttrs,
       traits=FOLDABLE)
define("nn.conv_transpose", ("x", "w", "b?"), "N-D transposed convolution, weights [C, M/group, k...] "
       "(ONNX ConvTranspose, pads and output_shape resolved)", _conv_transpose_infer,
       lambda k, x, w, b=None: S.conv_transpose_nd(x, w, b, k.attrs.strides, k.attrs.pads, k.attrs.dilations,
                                                   k.attrs.group, k.attrs.output_padding),
       ConvTransposeAttrs, traits=FOLDABLE)
define("nn.global_maxpool", ("x",), "max over all spatial dims, kept as size 1", _global_infer,
       lambda k, x: S.global_maxpool(x), traits=FOLDABLE)


# -- resize -------------------------------------------------------------------------------
class ResizeMode(enum.Enum):
    nearest = "nearest"
    linear = "linear"
    cubic = "cubic"


class CoordMode(enum.Enum):
    half_pixel = "half_pixel"
    half_pixel_symmetric = "half_pixel_symmetric"
    pytorch_half_pixel = "pytorch_half_pixel"
    align_corners = "align_corners"
    asymmetric = "asymmetric"
    tf_half_pixel_for_nn = "tf_half_pixel_for_nn"


class NearestMode(enum.Enum):
    round_prefer_floor = "round_prefer_floor"
    round_prefer_ceil = "round_prefer_ceil"
    floor = "floor"
    ceil = "ceil"


@dataclass(frozen=True)
class ResizeAttrs:
    sizes: tuple[int, ...]
    scales: tuple[float, ...]
    mode: ResizeMode = ResizeMode.nearest
    coord_mode: CoordMode = CoordMode.half_pixel
    nearest_mode: NearestMode = NearestMode.round_prefer_floor
    cubic_coeff_a: float = -0.75
    exclude_outside: bool = False


def _resize_infer(types, a):
    x = types[0]
    _float(x)
    if len(a.sizes) != x.rank or len(a.scales) != x.rank:
        raise InferError(f"resize needs {x.rank} sizes and scales, got {list(a.sizes)} and {list(a.scales)}")
    if min(a.sizes, default=1) < 1 or min(a.scales, default=1) <= 0:
        raise InferError("resize sizes and scales must be positive")
    for d, s, sc in zip(x.shape, a.sizes, a.scales):
        if not isinstance(d, int) and (s, sc) != (1, 1.0):
            raise InferError(f"resize along symbolic dim '{d}'")   # sizes hold 1 there: kept as is
    return [x.with_shape(tuple(d if isinstance(d, str) else s for d, s in zip(x.shape, a.sizes)))]


def _resize(k, x):
    a = k.attrs
    sizes = tuple(x.shape[i] if isinstance(d, str) else a.sizes[i] for i, d in enumerate(k.in_types[0].shape))
    return S.resize(x, sizes, a.scales, a.mode.value, a.coord_mode.value, a.nearest_mode.value, a.cubic_coeff_a,
                    a.exclude_outside)


define("nn.resize", ("x",), "nearest, (multi)linear or cubic resize to static sizes (ONNX Resize)", _resize_infer,
       _resize, ResizeAttrs, traits=FOLDABLE)


# -- normalization ------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerNormAttrs:
    axis: int = -1
    epsilon: float = 1e-5


@dataclass(frozen=True)
class LayerNormStatsAttrs:
    axis: int = -1
    epsilon: float = 1e-5
    stash: DType = DType.f32   # the dtype of Mean and InvStdDev (ONNX stash_type)


@dataclass(frozen=True)
class EpsilonAttrs:
    epsilon: float = 1e-5


@dataclass(frozen=True)
class GroupNormAttrs:
    num_groups: int
    epsilon: float = 1e-5


@dataclass(frozen=True)
class LrnAttrs:
    size: int
    alpha: float = 0.0001
    beta: float = 0.75
    bias: float = 1.0


def _layernorm_infer(types, a):
    x = types[0]
    _float(x)
    ax = _axis(a.axis, x.rank)
    for t in types[1:]:
        if t.dtype != x.dtype or broadcast_shapes(t.shape, x.shape[ax:]) != x.shape[ax:]:
            raise InferError(f"layernorm scale/bias {t} must broadcast to {x.shape[ax:]}")
    return [x]


def _layernorm_stats_infer(types, a):
    y = _layernorm_infer(types, a)[0]
    if a.stash not in (DType.f32, DType.f64):
        raise InferError(f"layernorm statistics in f32 or f64, got {a.stash}")
    ax = _axis(a.axis, y.rank)
    stats = TensorType(a.stash, y.shape[:ax] + (1,) * (y.rank - ax))
    return [y, stats, stats]


def _instancenorm_infer(types, a):
    x = types[0]
    _float(x)
    if x.rank < 3:
        raise InferError(f"instancenorm wants rank >= 3, got {x}")
    for t in types[1:]:
        if t.shape != (x.shape[1],):
            raise InferError(f"instancenorm scale/bias must be [{x.shape[1]}], got {t}")
    return [x]


def _groupnorm_infer(types, a):
    x = _instancenorm_infer(types, a)[0]
    if a.num_groups < 1 or not isinstance(x.shape[1], int) or x.shape[1] % a.num_groups:
        raise InferError(f"groupnorm: channels {x.shape[1]} must split into num_groups={a.num_groups} groups")
    return [x]


def _lrn_infer(types, a):
    _float(types[0])
    if types[0].rank < 3 or a.size < 1:
        raise InferError(f"lrn wants rank >= 3 and size >= 1, got {types[0]} and size {a.size}")
    return [types[0]]


define("nn.layernorm", ("x", "scale", "bias?"), "normalize over dims axis..last, then scale and shift "
       "(ONNX LayerNormalization, statistics in float64)", _layernorm_infer,
       lambda k, x, s, b=None: S.layernorm(x, s, b, k.attrs.axis, k.attrs.epsilon), LayerNormAttrs,
       traits=FOLDABLE)
define("nn.layernorm_stats", ("x", "scale", "bias?"), "nn.layernorm that also returns the mean and "
       "1 / sqrt(variance + epsilon) (ONNX LayerNormalization's Mean and InvStdDev outputs)", _layernorm_stats_infer,
       lambda k, x, s, b=None: S.layernorm_stats(x, s, b, k.attrs.axis, k.attrs.epsilon, k.attrs.stash.numpy),
       LayerNormStatsAttrs, results=3, traits=FOLDABLE)
define("nn.instancenorm", ("x", "scale", "bias"), "normalize each sample and channel over its spatial dims "
       "(ONNX InstanceNormalization)", _instancenorm_infer,
       lambda k, x, s, b: S.instancenorm(x, s, b, k.attrs.epsilon), EpsilonAttrs, traits=FOLDABLE)
define("nn.groupnorm", ("x", "scale", "bias"), "normalize each sample's channel groups over their channels and "
       "spatial dims, then a per-channel scale and shift (ONNX GroupNormalization-21)", _groupnorm_infer,
       lambda k, x, s, b: S.groupnorm(x, s, b, k.attrs.num_groups, k.attrs.epsilon), GroupNormAttrs,
       traits=FOLDABLE)
define("nn.lrn", ("x",), "local response normalization across channels (ONNX LRN)", _lrn_infer,
       lambda k, x: S.lrn(x, k.attrs.size, k.attrs.alpha, k.attrs.beta, k.attrs.bias), LrnAttrs, traits=FOLDABLE)


# -- activations --------------------------------------------------------------------------
class GeluApprox(enum.Enum):
    none = "none"
    tanh = "tanh"


@dataclass(frozen=True)
class GeluAttrs:
    approximate: GeluApprox = GeluApprox.none


@dataclass(frozen=True)
class HardSigmoidAttrs:
    alpha: float = 0.2
    beta: float = 0.5


@dataclass(frozen=True)
class EluAttrs:
    alpha: float = 1.0


@dataclass(frozen=True)
class SeluAttrs:
    alpha: float = 1.67326319217681884765625
    gamma: float = 1.05070102214813232421875


@dataclass(frozen=True)
class LogSoftmaxAttrs:
    axis: int = -1


def _unary(types, a):
    _float(types[0])
    if hasattr(a, "axis"):
        _axis(a.axis, types[0].rank)
    return [types[0]]


def _prelu_infer(types, a):
    x, slope = types
    _float(x)
    if slope.dtype != x.dtype or broadcast_shapes(slope.shape, x.shape) != x.shape:
        raise InferError(f"prelu slope {slope} must broadcast to {x}")
    return [x]


def _attr_values(a) -> tuple:
    """The attribute values in declaration order, enums as their text (what the kernels take)."""
    return tuple(v.value if isinstance(v, enum.Enum) else v for v in vars(a).values())


# kind -> (kernels_spatial function, attributes, summary); kernel(x, *attribute values)
ACTIVATIONS = {
    "nn.erf": ("erf", None, "the error function"),
    "nn.gelu": ("gelu", GeluAttrs, "x * Phi(x), exact or tanh-approximated (ONNX Gelu)"),
    "nn.log_softmax": ("log_softmax", LogSoftmaxAttrs, "log of softmax along one axis"),
    "nn.hardmax": ("hardmax", LogSoftmaxAttrs, "one-hot of the first maximum along one axis"),
    "nn.hard_sigmoid": ("hard_sigmoid", HardSigmoidAttrs, "max(0, min(1, alpha * x + beta))"),
    "nn.hard_swish": ("hard_swish", None, "x * max(0, min(1, x / 6 + 1 / 2))"),
    "nn.softplus": ("softplus", None, "log(1 + exp(x))"),
    "nn.softsign": ("softsign", None, "x / (1 + |x|)"),
    "nn.elu": ("elu", EluAttrs, "x, or alpha * (exp(x) - 1) below 0"),
    "nn.selu": ("selu", SeluAttrs, "gamma * (x, or alpha * (exp(x) - 1) at and below 0)"),
    "nn.celu": ("celu", EluAttrs, "max(0, x) + min(0, alpha * (exp(x / alpha) - 1))"),
    "nn.mish": ("mish", None, "x * tanh(softplus(x))"),
    "nn.thresholded_relu": ("thresholded_relu", EluAttrs, "x where x > alpha, else 0"),
}


def _activation_kernel(fn):
    return lambda k, x: fn(x, *_attr_values(k.attrs))


for _kind, (_fn, _attrs, _summary) in ACTIVATIONS.items():
    _extra = {"attrs": _attrs} if _attrs is not None else {}
    define(_kind, ("x",), _summary, _unary, _activation_kernel(getattr(S, _fn)), traits=FOLDABLE, **_extra)

define("nn.prelu", ("x", "slope"), "slope * x where x < 0 (slope broadcast to x; ONNX PRelu)", _prelu_infer,
       lambda k, x, s: S.prelu(x, s), traits=FOLDABLE)
