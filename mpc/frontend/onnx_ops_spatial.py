"""ONNX handlers of the spatial, normalization and activation ops, shaped like the spec (opset 13+).

Conv, MaxPool and AveragePool take 1, 2 or 3 spatial dims: 2-D ones import onto `nn.conv2d`,
`nn.maxpool2d` and `nn.avgpool2d` (which the MP target and the compiled kernels know), 1-D and 3-D
ones (and MaxPool with its Indices output) onto the rank-generic `nn.conv`, `nn.maxpool`,
`nn.maxpool_indices` and `nn.avgpool`. auto_pad, output_shape and Resize's scales/sizes are resolved
at import into explicit attributes. Every attribute is consumed, or rejected naming its value.
"""
from __future__ import annotations

import math

from mpc.errors import Location
from mpc.frontend.onnx_ops import Node, handler
from mpc.ir import DType, Op, Value, lookup
from mpc.ir.ops_nn import ConvAttrs, PoolAttrs
from mpc.ir.ops_nn_spatial import (
    AvgPoolNdAttrs,
    ConvNdAttrs,
    ConvTransposeAttrs,
    CoordMode,
    EluAttrs,
    EpsilonAttrs,
    GeluApprox,
    GeluAttrs,
    GroupNormAttrs,
    HardSigmoidAttrs,
    LayerNormAttrs,
    LayerNormStatsAttrs,
    LogSoftmaxAttrs,
    LrnAttrs,
    MaxPoolIndicesAttrs,
    NearestMode,
    PoolNdAttrs,
    ResizeAttrs,
    ResizeMode,
    SeluAttrs,
)

WINDOW = ("auto_pad", "dilations", "kernel_shape", "pads", "strides")


# -- helpers ------------------------------------------------------------------------------
def _spatial_rank(cx, node: Node) -> int:
    t = cx.type(node, 0)
    if not 3 <= t.rank <= 5:
        raise node.reject(f"only 1-D, 2-D and 3-D windows are supported (input [N,C,D...]), got {t}")
    return t.rank - 2


def _per_dim(node: Node, key: str, fill: int, n: int) -> tuple[int, ...]:
    v = tuple(int(x) for x in node.attr(key, (fill,) * n))
    if len(v) != n:
        raise node.reject(f"{key} must have {n} values for a {n // (2 if key == 'pads' else 1)}-D window", key)
    return v


def _same_pads(node: Node, sizes, kernel, strides, dilations, auto: str) -> tuple[int, ...]:
    """The pads of auto_pad SAME_UPPER/SAME_LOWER: output ceil(size / stride), the odd pad at the end
    (upper) or at the beginning (lower)."""
    if not all(isinstance(d, int) for d in sizes):
        raise node.reject(f"auto_pad={auto} needs static spatial dims, got {list(sizes)}", "auto_pad")
    begin, end = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations):
        total = max(0, (math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size)
        small, big = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else big)
        end.append(big if auto == "SAME_UPPER" else small)
    return tuple(begin + end)


def _window(cx, node: Node, kernel) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(strides, pads, dilations) of a window op, auto_pad resolved as the ONNX spec does."""
    n = len(kernel)
    strides, dilations = _per_dim(node, "strides", 1, n), _per_dim(node, "dilations", 1, n)
    auto = node.attr("auto_pad", "NOTSET")
    if auto == "NOTSET":
        return strides, _per_dim(node, "pads", 0, 2 * n), dilations
    if any(node.attr("pads", ())):
        raise node.reject(f"pads cannot be combined with auto_pad={auto}", "pads")
    if auto == "VALID":
        return strides, (0,) * (2 * n), dilations
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise node.reject("expected NOTSET, VALID, SAME_UPPER or SAME_LOWER", "auto_pad")
    if any(d != 1 for d in dilations):
        raise node.reject(f"auto_pad={auto} with dilations > 1 is not supported (onnxruntime refuses it too)",
                          "auto_pad")
    return strides, _same_pads(node, cx.type(node, 0).shape[2:], kernel, strides, dilations, auto), dilations


def _kernel_attr(node: Node, n: int) -> tuple[int, ...]:
    if "kernel_shape" not in node.attrs:
        raise node.reject("kernel_shape is required")
    return _per_dim(node, "kernel_shape", 1, n)


def _operands(cx, node: Node, count: int) -> list[Value]:
    return [cx.value(node, i) for i in range(count) if node.has_input(i)]


def _second_output_used(cx, node: Node) -> bool:
    return len(node.outputs) > 1 and node.outputs[1] != "" and cx.used(node.outputs[1])


# -- convolution and pooling --------------------------------------------------------------
@handler("Conv", ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"))
def conv(cx, node: Node):
    """Conv(X, W, B?; auto_pad, dilations, group, kernel_shape, pads, strides), 1-D to 3-D."""
    n = _spatial_rank(cx, node)
    w = cx.type(node, 1)
    if w.rank != n + 2:
        raise node.reject(f"weight {w} does not match a {n}-D input {cx.type(node, 0)}")
    kernel = tuple(w.shape[2:])
    if "kernel_shape" in node.attrs and tuple(node.attr("kernel_shape")) != kernel:
        raise node.reject(f"kernel_shape does not match the weight {w}", "kernel_shape")
    strides, pads, dilations = _window(cx, node, kernel)
    group = int(node.attr("group", 1))
    if n == 2:
        return cx.emit(node, "nn.conv2d", _operands(cx, node, 3), ConvAttrs(strides, pads, dilations, group))
    return cx.emit(node, "nn.conv", _operands(cx, node, 3), ConvNdAttrs(strides, pads, dilations, group))


def _pool_nd(cx, node: Node) -> tuple:
    """(kernel, strides, pads, dilations, ceil_mode) of a pooling node, 1-D to 3-D."""
    n = _spatial_rank(cx, node)
    kernel = _kernel_attr(node, n)
    strides, pads, dilations = _window(cx, node, kernel)
    return kernel, strides, pads, dilations, bool(node.attr("ceil_mode", 0))


def _emit_results(cx, node: Node, kind: str, operands: list[Value], attrs) -> Value:
    """An op with several results, named after the node's outputs (an unnamed optional output gets a
    step name); the importer records the first in its environment, the others go there here."""
    opdef = lookup(kind)
    try:
        types = opdef.infer([v.type for v in operands], attrs)
    except ValueError as e:
        raise node.reject(str(e)) from None
    results = [Value(cx.result_name(node.outputs[i]) if i < len(node.outputs) and node.outputs[i]
                     else cx.unique(f"{node.outputs[0]}.{i}"), t) for i, t in enumerate(types)]
    cx.graph.ops.append(Op(kind, operands, results, attrs, Location(node=node.name)))
    for out, v in zip(node.outputs[1:], results[1:]):
        if out:
            cx.env[out] = v
    return results[0]


@handler("MaxPool", ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"))
def maxpool(cx, node: Node):
    """MaxPool(X; ...) -> Y, Indices?, 1-D to 3-D; storage_order only matters for Indices."""
    order = int(node.attr("storage_order", 0))
    if order not in (0, 1):
        raise node.reject("expected 0 (row major) or 1 (column major)", "storage_order")
    window = _pool_nd(cx, node)
    if _second_output_used(cx, node):
        return _emit_results(cx, node, "nn.maxpool_indices", [cx.value(node, 0)], MaxPoolIndicesAttrs(*window, order))
    if len(window[0]) == 2:
        return cx.emit(node, "nn.maxpool2d", [cx.value(node, 0)], PoolAttrs(*window))
    return cx.emit(node, "nn.maxpool", [cx.value(node, 0)], PoolNdAttrs(*window))


@handler("AveragePool", ("auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads",
                         "strides"))
def avgpool(cx, node: Node):
    """AveragePool(X; ...), 1-D to 3-D, dilations included."""
    window, include = _pool_nd(cx, node), bool(node.attr("count_include_pad", 0))
    if len(window[0]) == 2:
        return cx.emit(node, "nn.avgpool2d", [cx.value(node, 0)], PoolAttrs(*window, include))
    return cx.emit(node, "nn.avgpool", [cx.value(node, 0)], AvgPoolNdAttrs(*window, include))


@handler("GlobalMaxPool")
def global_maxpool(cx, node: Node):
    """GlobalMaxPool(X): max over every spatial dim."""
    return cx.emit(node, "nn.global_maxpool", [cx.value(node, 0)])


def _transpose_pads(node: Node, sizes, kernel, strides, dilations, output_padding) -> tuple[int, ...]:
    """Pads of ConvTranspose: explicit, or what output_shape / auto_pad SAME_* imply (the odd unit at
    the beginning except for SAME_UPPER, as the spec writes)."""
    n = len(kernel)
    auto = node.attr("auto_pad", "NOTSET")
    if auto not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise node.reject("expected NOTSET, VALID, SAME_UPPER or SAME_LOWER", "auto_pad")
    full = [(s - 1) * st + (k - 1) * d + 1 + op for s, st, k, d, op in zip(sizes, strides, kernel, dilations,
                                                                         output_padding)]
    if "output_shape" in node.attrs:
        target = [int(x) for x in node.attr("output_shape")][-n:]
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        target = [s * st for s, st in zip(sizes, strides)]
    else:
        return (0,) * (2 * n) if auto == "VALID" else _per_dim(node, "pads", 0, 2 * n)
    if len(target) != n:
        raise node.reject(f"output_shape must give the {n} spatial sizes", "output_shape")
    total = [f - t for f, t in zip(full, target)]
    upper = auto == "SAME_UPPER"
    begin = [t // 2 if upper else t - t // 2 for t in total]
    return tuple(begin + [t - b for t, b in zip(total, begin)])


@handler("ConvTranspose", ("auto_pad", "dilations", "group", "kernel_shape", "output_padding", "output_shape",
                           "pads", "strides"))
def conv_transpose(cx, node: Node):
    """ConvTranspose(X, W, B?; ...), 1-D to 3-D; output_shape and auto_pad become explicit pads."""
    n = _spatial_rank(cx, node)
    x, w = cx.type(node, 0), cx.type(node, 1)
    if w.rank != n + 2:
        raise node.reject(f"weight {w} does not match a {n}-D input {x}")
    kernel = tuple(w.shape[2:])
    if "kernel_shape" in node.attrs and tuple(node.attr("kernel_shape")) != kernel:
        raise node.reject(f"kernel_shape does not match the weight {w}", "kernel_shape")
    if not all(isinstance(d, int) for d in x.shape[2:]):
        raise node.reject(f"conv_transpose needs static spatial dims, got {x}")
    strides, dilations = _per_dim(node, "strides", 1, n), _per_dim(node, "dilations", 1, n)
    output_padding = _per_dim(node, "output_padding", 0, n)
    pads = _transpose_pads(node, x.shape[2:], kernel, strides, dilations, output_padding)
    attrs = ConvTransposeAttrs(strides, pads, dilations, output_padding, int(node.attr("group", 1)))
    return cx.emit(node, "nn.conv_transpose", _operands(cx, node, 3), attrs)


# -- resize -------------------------------------------------------------------------------
def _resize_reject(node: Node) -> None:
    if node.attr("mode", "nearest") not in ("nearest", "linear", "cubic"):
        raise node.reject("expected nearest, linear or cubic", "mode")
    if node.attr("antialias", 0):
        raise node.reject("antialiased resize is not supported", "antialias")
    if node.attr("keep_aspect_ratio_policy", "stretch") not in ("stretch", "not_larger", "not_smaller"):
        raise node.reject("expected stretch, not_larger or not_smaller", "keep_aspect_ratio_policy")
    modes = {m.value for m in CoordMode}
    if node.attr("coordinate_transformation_mode", "half_pixel") not in modes:
        raise node.reject(f"expected one of {', '.join(sorted(modes))}", "coordinate_transformation_mode")


def _resize_axes(cx, node: Node, rank: int) -> list[int]:
    axes = [int(a) % rank for a in node.attr("axes", range(rank))]
    if len(set(axes)) != len(axes):
        raise node.reject("repeated axes", "axes")
    return axes


def _resize_target(cx, node: Node, x) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """(sizes, scales) over every dim from the constant scales or sizes input (ONNX: sizes win and
    then scale = size / input size); a symbolic dim keeps size 1 and scale 1 (it is not resized)."""
    axes = _resize_axes(cx, node, x.rank)
    sizes, scales = list(x.shape), [1.0] * x.rank
    if node.has_input(3):
        _from_sizes(cx, node, x, axes, sizes, scales)
        _keep_aspect_ratio(node, x, axes, sizes, scales)
    else:
        _from_scales(cx, node, x, axes, sizes, scales)
    return tuple(1 if isinstance(d, str) else d for d in sizes), tuple(scales)


def _from_sizes(cx, node: Node, x, axes: list[int], sizes: list, scales: list[float]) -> None:
    given = cx.known(node, 3)
    if given is None or given.symbolic:
        raise node.reject(f"sizes (input '{node.inputs[3]}') must be a constant")
    for a, s in zip(axes, given.array.reshape(-1)):
        if not isinstance(x.shape[a], int):
            raise node.reject(f"resizing symbolic dim '{x.shape[a]}' is not supported")
        sizes[a], scales[a] = int(s), int(s) / x.shape[a]


def _from_scales(cx, node: Node, x, axes: list[int], sizes: list, scales: list[float]) -> None:
    given = cx.known(node, 2) if node.has_input(2) else None
    if given is None or given.array.size == 0:
        raise node.reject(f"scales (input '{node.inputs[2] if node.has_input(2) else ''}') or sizes must be a "
                          f"non-empty constant")
    for a, s in zip(axes, given.array.reshape(-1)):
        scales[a] = float(s)
        if not 0 < scales[a] < math.inf:
            raise node.reject(f"scales must be positive and finite, got {_show_floats(given.array)}")
        if isinstance(x.shape[a], int):
            sizes[a] = math.floor(x.shape[a] * scales[a])
        elif scales[a] != 1.0:
            raise node.reject(f"resizing symbolic dim '{x.shape[a]}' is not supported")


def _keep_aspect_ratio(node: Node, x, axes: list[int], sizes: list, scales: list[float]) -> None:
    """keep_aspect_ratio_policy not_larger / not_smaller: one scale for every resized axis, the smallest
    or largest of size / input size, and sizes round(scale * input size) rounding halves up (in place)."""
    policy = node.attr("keep_aspect_ratio_policy", "stretch")
    if policy == "stretch":
        return
    scale = (min if policy == "not_larger" else max)(scales[a] for a in axes)
    for a in axes:
        scales[a], sizes[a] = scale, int(scale * x.shape[a] + 0.5)


def _show_floats(a) -> str:
    return "[" + ", ".join(str(float(v)) for v in a.reshape(-1)) + "]"


@handler("Resize", ("antialias", "axes", "coordinate_transformation_mode", "cubic_coeff_a", "exclude_outside",
                    "extrapolation_value", "keep_aspect_ratio_policy", "mode", "nearest_mode"))
def resize(cx, node: Node):
    """Resize(X, roi?, scales?, sizes?), nearest, linear or cubic, scales/sizes constant; roi and
    extrapolation_value only affect tf_crop_and_resize (rejected)."""
    _resize_reject(node)
    x = cx.type(node, 0)
    sizes, scales = _resize_target(cx, node, x)
    attrs = ResizeAttrs(sizes, scales, ResizeMode(node.attr("mode", "nearest")),
                        CoordMode(node.attr("coordinate_transformation_mode", "half_pixel")),
                        NearestMode(node.attr("nearest_mode", "round_prefer_floor")),
                        float(node.attr("cubic_coeff_a", -0.75)), bool(node.attr("exclude_outside", 0)))
    return cx.emit(node, "nn.resize", [cx.value(node, 0)], attrs)


# -- normalization ------------------------------------------------------------------------
@handler("LayerNormalization", ("axis", "epsilon", "stash_type"))
def layer_norm(cx, node: Node):
    """LayerNormalization(X, Scale, B?; axis=-1, epsilon=1e-5, stash_type=1): statistics are computed
    in float64 whatever stash_type says; the Mean and InvStdDev outputs are rejected when used."""
    if int(node.attr("stash_type", 1)) not in (1, 11):   # float32 or double
        raise node.reject("expected stash_type 1 (float) or 11 (double)", "stash_type")
    axis, epsilon = int(node.attr("axis", -1)), float(node.attr("epsilon", 1e-5))
    if not any(out and cx.used(out) for out in node.outputs[1:]):
        return cx.emit(node, "nn.layernorm", _operands(cx, node, 3), LayerNormAttrs(axis, epsilon))
    stash = DType.f32 if int(node.attr("stash_type", 1)) == 1 else DType.f64
    attrs = LayerNormStatsAttrs(axis, epsilon, stash)
    return _emit_results(cx, node, "nn.layernorm_stats", _operands(cx, node, 3), attrs)


@handler("InstanceNormalization", ("epsilon",))
def instance_norm(cx, node: Node):
    """InstanceNormalization(input, scale, B; epsilon=1e-5)."""
    return cx.emit(node, "nn.instancenorm", _operands(cx, node, 3), EpsilonAttrs(float(node.attr("epsilon", 1e-5))))


@handler("GroupNormalization", ("epsilon", "num_groups", "stash_type"))
def group_norm(cx, node: Node):
    """GroupNormalization(X, scale, bias; epsilon=1e-5, num_groups, stash_type=1), opset 21's per-channel
    scale and bias (onnx.checker refuses the deprecated opset 18 form, whose scale is per group)."""
    if int(node.attr("stash_type", 1)) not in (1, 11):
        raise node.reject("expected stash_type 1 (float) or 11 (double)", "stash_type")
    attrs = GroupNormAttrs(int(node.attr("num_groups")), float(node.attr("epsilon", 1e-5)))
    return cx.emit(node, "nn.groupnorm", _operands(cx, node, 3), attrs)


@handler("LRN", ("alpha", "beta", "bias", "size"))
def lrn(cx, node: Node):
    """LRN(X; alpha=1e-4, beta=0.75, bias=1, size)."""
    attrs = LrnAttrs(int(node.attr("size")), float(node.attr("alpha", 0.0001)), float(node.attr("beta", 0.75)),
                     float(node.attr("bias", 1.0)))
    return cx.emit(node, "nn.lrn", [cx.value(node, 0)], attrs)


# -- activations --------------------------------------------------------------------------
def _activation(kind: str, make=None):
    def fn(cx, node: Node):
        attrs = make(node) if make is not None else None
        return cx.emit(node, kind, [cx.value(node, 0)], attrs)
    return fn


def _gelu_attrs(node: Node) -> GeluAttrs:
    approx = node.attr("approximate", "none")
    if approx not in ("none", "tanh"):
        raise node.reject("expected none or tanh", "approximate")
    return GeluAttrs(GeluApprox(approx))


_ACTIVATIONS = [
    ("Erf", "nn.erf", (), None),
    ("Gelu", "nn.gelu", ("approximate",), _gelu_attrs),
    ("LogSoftmax", "nn.log_softmax", ("axis",), lambda nd: LogSoftmaxAttrs(int(nd.attr("axis", -1)))),
    ("Hardmax", "nn.hardmax", ("axis",), lambda nd: LogSoftmaxAttrs(int(nd.attr("axis", -1)))),
    ("HardSigmoid", "nn.hard_sigmoid", ("alpha", "beta"),
     lambda nd: HardSigmoidAttrs(float(nd.attr("alpha", 0.2)), float(nd.attr("beta", 0.5)))),
    ("HardSwish", "nn.hard_swish", (), None),
    ("Softplus", "nn.softplus", (), None),
    ("Softsign", "nn.softsign", (), None),
    ("Elu", "nn.elu", ("alpha",), lambda nd: EluAttrs(float(nd.attr("alpha", 1.0)))),
    ("Selu", "nn.selu", ("alpha", "gamma"),
     lambda nd: SeluAttrs(float(nd.attr("alpha", SeluAttrs.alpha)), float(nd.attr("gamma", SeluAttrs.gamma)))),
    ("Celu", "nn.celu", ("alpha",), lambda nd: EluAttrs(float(nd.attr("alpha", 1.0)))),
    ("Mish", "nn.mish", (), None),
    ("ThresholdedRelu", "nn.thresholded_relu", ("alpha",), lambda nd: EluAttrs(float(nd.attr("alpha", 1.0)))),
]
for _op, _kind, _attrs, _make in _ACTIVATIONS:
    handler(_op, _attrs)(_activation(_kind, _make))


@handler("PRelu")
def prelu(cx, node: Node):
    """PRelu(X, slope): slope broadcast to X (exporters write a per-channel slope as [C,1,...])."""
    return cx.emit(node, "nn.prelu", [cx.value(node, 0), cx.value(node, 1)])
