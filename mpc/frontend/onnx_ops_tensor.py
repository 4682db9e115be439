"""ONNX handlers of the tensor, elementwise, logic and reduction ops (see mpc/ir/ops_nn_tensor.py).

One handler per op type, shaped like the spec (opset 13+): every attribute is declared and either
consumed or rejected by name. When every input is an integer or bool tensor known at import (shape
computations), the node is evaluated here through its op's kernel and stays a `Known`; otherwise it
becomes IR ops. Importing this module also replaces the fold-only handlers of onnx_ops for Cast, Gather,
Slice and ReduceMean by ones that handle run-time data (ReduceMean over exactly the spatial dims still
imports as nn.global_avgpool, which the MP target maps).
"""
from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto

from mpc.errors import Location
from mpc.frontend.onnx_ops import HANDLERS, ONNX_DTYPES, Known, Node, _ints, _scalar, handler
from mpc.frontend.onnx_ops import gather as _fold_gather
from mpc.frontend.onnx_ops import reduce_mean as _spatial_mean
from mpc.frontend.onnx_ops import slice_ as _fold_slice
from mpc.ir import DType, InferError, KernelContext, Op, Value, lookup
from mpc.ir.ops_nn import CastAttrs
from mpc.ir.ops_nn_tensor import (
    ArgReduceAttrs,
    ExpandAttrs,
    GatherAttrs,
    IsInfAttrs,
    ModAttrs,
    PadAttrs,
    PadMode,
    ReduceAttrs,
    ReduceMode,
    SliceAttrs,
    TileAttrs,
)

INT64_MAX = 2**63 - 1


# -- helpers ------------------------------------------------------------------------------
def _operand_indices(node: Node, count: int | None = None) -> list[int]:
    """The given inputs among the first `count` (all when None)."""
    n = len(node.inputs) if count is None else count
    return [i for i in range(n) if node.has_input(i)]


def _foldable(cx, node: Node, indices: list[int]) -> list[np.ndarray] | None:
    """The arrays of inputs `indices` when each is an integer/bool constant free of dynamic dims."""
    ks = [cx.known(node, i) for i in indices]
    if all(k is not None and k.integral and not k.symbolic for k in ks):
        return [k.array.astype(np.int64) if k.array.dtype == object else k.array for k in ks]
    return None


def _apply(cx, node: Node, kind: str, count: int | None = None, attrs=None):
    """Op `kind` on the node's first `count` inputs (all when None): folded at import when they are
    known integer tensors, else emitted."""
    indices = _operand_indices(node, count)
    arrays = _foldable(cx, node, indices)
    if arrays is None:
        return cx.emit(node, kind, [cx.value(node, i) for i in indices], attrs)
    opdef = lookup(kind)
    attrs = attrs if attrs is not None else opdef.attrs()
    in_types = [cx.type(node, i) for i in indices]
    try:
        out_types = opdef.infer(in_types, attrs)
    except InferError as e:
        raise node.reject(str(e)) from None
    with np.errstate(all="ignore"):
        out = opdef.kernel(KernelContext(attrs, tuple(in_types), tuple(out_types)), *arrays)
    return Known(np.asarray(out), node.outputs[0])


def _emit_output(cx, node: Node, j: int, kind: str, operands: list[Value], attrs) -> Value:
    """Emit an op whose result is the node's output j (for multi-output nodes such as Split)."""
    try:
        types = lookup(kind).infer([v.type for v in operands], attrs)
    except InferError as e:
        raise node.reject(str(e)) from None
    result = Value(cx.result_name(node.outputs[j]), types[0])
    cx.graph.ops.append(Op(kind, operands, [result], attrs, Location(node=node.name)))
    cx.env[node.outputs[j]] = result
    return result


def _axes(cx, node: Node, input_index: int) -> list[int] | None:
    """Axes from the attribute (older opsets) or the optional input (newer); None when absent."""
    if node.has_input(input_index):
        return _ints(cx, node, input_index, "axes")
    axes = node.attr("axes")
    return None if axes is None else [int(a) for a in axes]


# -- elementwise --------------------------------------------------------------------------
def _simple(kind: str):
    def fn(cx, node: Node):
        return _apply(cx, node, kind)
    return fn


for _op, _kind in [("Sqrt", "nn.sqrt"), ("Abs", "nn.abs"), ("Neg", "nn.neg"), ("Exp", "nn.exp"),
                   ("Log", "nn.log"), ("Reciprocal", "nn.reciprocal"), ("Floor", "nn.floor"),
                   ("Ceil", "nn.ceil"), ("Round", "nn.round"), ("Sign", "nn.sign"), ("Not", "nn.not"),
                   ("BitwiseNot", "nn.bitwise_not"), ("IsNaN", "nn.isnan"), ("And", "nn.and"), ("Or", "nn.or"),
                   ("Xor", "nn.xor"), ("BitwiseAnd", "nn.bitwise_and"), ("BitwiseOr", "nn.bitwise_or"),
                   ("BitwiseXor", "nn.bitwise_xor"), ("Equal", "nn.equal"), ("Less", "nn.less"),
                   ("Greater", "nn.greater"), ("LessOrEqual", "nn.less_equal"),
                   ("GreaterOrEqual", "nn.greater_equal"), ("Pow", "nn.pow"), ("Where", "nn.where")]:
    handler(_op)(_simple(_kind))


@handler("IsInf", ("detect_negative", "detect_positive"))
def is_inf(cx, node: Node):
    """IsInf(X; detect_negative=1, detect_positive=1)."""
    attrs = IsInfAttrs(bool(node.attr("detect_negative", 1)), bool(node.attr("detect_positive", 1)))
    return _apply(cx, node, "nn.isinf", attrs=attrs)


@handler("Mod", ("fmod",))
def mod(cx, node: Node):
    """Mod(A, B; fmod=0): fmod=0 takes the divisor's sign (integers only), fmod=1 the dividend's."""
    return _apply(cx, node, "nn.mod", attrs=ModAttrs(bool(node.attr("fmod", 0))))


@handler("BitShift", ("direction",))
def bit_shift(cx, node: Node):
    """BitShift(X, Y; direction=LEFT|RIGHT) on unsigned integers."""
    direction = node.attr("direction")
    if direction not in ("LEFT", "RIGHT"):
        raise node.reject("expected LEFT or RIGHT", "direction")
    return _apply(cx, node, f"nn.shift_{direction.lower()}")


def _chain(cx, node: Node, kind: str, last_step: str | None = None) -> Value:
    """inputs[0] kind inputs[1] kind ...; the last op takes the node's output name unless last_step."""
    acc = cx.value(node, 0)
    n = len(node.inputs)
    if n == 1 and last_step is None:
        return cx.emit(node, "nn.identity", [acc])
    for i in range(1, n):
        step = f"{kind.split('.')[1]}{i}" if i < n - 1 or last_step else None
        acc = cx.emit(node, kind, [acc, cx.value(node, i)], step=step)
    return acc


def _variadic(kind: str):
    def fn(cx, node: Node):
        arrays = _foldable(cx, node, _operand_indices(node))
        if arrays is not None:
            fold = {"nn.add": np.add, "nn.maximum": np.maximum, "nn.minimum": np.minimum}[kind]
            out = arrays[0]
            for a in arrays[1:]:
                out = fold(out, a)
            return Known(np.asarray(out), node.outputs[0])
        return _chain(cx, node, kind)
    return fn


for _op, _kind in [("Sum", "nn.add"), ("Max", "nn.maximum"), ("Min", "nn.minimum")]:
    handler(_op)(_variadic(_kind))


@handler("Mean")
def mean(cx, node: Node):
    """Mean(data_0, ...): the sum chain divided by the count (floats)."""
    total = _chain(cx, node, "nn.add", last_step="sum") if len(node.inputs) > 1 else cx.value(node, 0)
    if total.type.dtype.kind != "f":
        raise node.reject(f"Mean of {total.type.dtype} is not supported (floats only)")
    count = Known(np.array(len(node.inputs), total.type.dtype.numpy), f"{node.outputs[0]}.count")
    return cx.emit(node, "nn.div", [total, cx.weight(count, node.op_type, node.name)])


# -- reductions ---------------------------------------------------------------------------
_REDUCE = {"ReduceSum": ReduceMode.SUM, "ReduceMean": ReduceMode.MEAN, "ReduceMax": ReduceMode.MAX,
           "ReduceMin": ReduceMode.MIN, "ReduceProd": ReduceMode.PROD, "ReduceL1": ReduceMode.L1,
           "ReduceL2": ReduceMode.L2, "ReduceLogSum": ReduceMode.LOG_SUM,
           "ReduceLogSumExp": ReduceMode.LOG_SUM_EXP, "ReduceSumSquare": ReduceMode.SUM_SQUARE}


def _reduce(mode: ReduceMode):
    def fn(cx, node: Node):
        axes = _axes(cx, node, 1)
        if not axes and node.attr("noop_with_empty_axes", 0):
            return _apply(cx, node, "nn.identity", 1)
        t = cx.type(node, 0)
        given = axes or []
        spatial = sorted({a % t.rank for a in given}) == list(range(2, t.rank)) and len(given) == t.rank - 2
        if mode == ReduceMode.MEAN and t.rank >= 3 and t.dtype.kind == "f" and spatial:
            return _spatial_mean(cx, node)   # nn.global_avgpool: the form the MP target knows
        attrs = ReduceAttrs(mode, tuple(axes or ()), bool(node.attr("keepdims", 1)))
        return _apply(cx, node, "nn.reduce", 1, attrs)
    return fn


for _op, _mode in _REDUCE.items():
    # ReduceSum takes axes as an input from opset 13 on, the others from opset 18 on
    handler(_op, ("keepdims", "noop_with_empty_axes") + (() if _op == "ReduceSum" else ("axes",)))(_reduce(_mode))


def _arg(largest: bool):
    def fn(cx, node: Node):
        attrs = ArgReduceAttrs(largest, int(node.attr("axis", 0)), bool(node.attr("keepdims", 1)),
                               bool(node.attr("select_last_index", 0)))
        return _apply(cx, node, "nn.arg_reduce", attrs=attrs)
    return fn


handler("ArgMax", ("axis", "keepdims", "select_last_index"))(_arg(True))
handler("ArgMin", ("axis", "keepdims", "select_last_index"))(_arg(False))


# -- data movement ------------------------------------------------------------------------
@handler("Expand")
def expand(cx, node: Node):
    """Expand(input, shape): the shape must be known at import."""
    shape = tuple(_ints(cx, node, 1, "shape"))
    return _apply(cx, node, "nn.expand", 1, ExpandAttrs(shape))


@handler("Tile")
def tile(cx, node: Node):
    """Tile(input, repeats): the repeats must be known at import."""
    repeats = tuple(_ints(cx, node, 1, "repeats"))
    return _apply(cx, node, "nn.tile", 1, TileAttrs(repeats))


def _split_sizes(cx, node: Node, dim, axis: int) -> list[int]:
    if node.has_input(1):
        return _ints(cx, node, 1, "split")
    n = int(node.attr("num_outputs", len(node.outputs)))
    if not isinstance(dim, int):
        raise node.reject(f"splitting symbolic dim '{dim}' needs the split sizes", "axis")
    if n < 1 or n != len(node.outputs):
        raise node.reject(f"num_outputs must equal the {len(node.outputs)} outputs", "num_outputs")
    if "num_outputs" not in node.attrs and dim % n:
        raise node.reject(f"dim {dim} does not split into {n} equal parts")
    chunk = -(-dim // n)   # opset 18: equal chunks of ceil(dim / n), the last one smaller
    return [min(chunk, max(0, dim - i * chunk)) for i in range(n)]


@handler("Split", ("axis", "num_outputs"))
def split(cx, node: Node):
    """Split(input, split?; axis=0, num_outputs): one nn.slice per output."""
    t = cx.type(node, 0)
    axis = int(node.attr("axis", 0))
    if not -t.rank <= axis < t.rank:
        raise node.reject(f"axis out of range for {t}", "axis")
    sizes = _split_sizes(cx, node, t.shape[axis], axis)
    if len(sizes) != len(node.outputs) or any(s < 0 for s in sizes):
        raise node.reject(f"split sizes {sizes} do not match the {len(node.outputs)} outputs")
    x, start, first = cx.value(node, 0), 0, None
    for j, size in enumerate(sizes):
        attrs = SliceAttrs((start,), (start + size,), (axis,), (1,))
        start += size
        if not node.outputs[j]:
            continue
        out = _emit_output(cx, node, j, "nn.slice", [x], attrs)
        first = out if j == 0 else first
    if first is None:
        raise node.reject("the first output of Split must be used")
    return first


@handler("Slice")
def slice_(cx, node: Node):
    """Slice(data, starts, ends, axes?, steps?): starts, ends, axes and steps known at import."""
    data = cx.known(node, 0)
    if data is not None and data.integral:
        return _fold_slice(cx, node)
    rank = cx.type(node, 0).rank
    starts, ends = _ints(cx, node, 1, "starts"), _ints(cx, node, 2, "ends")
    axes = _ints(cx, node, 3, "axes") if node.has_input(3) else list(range(len(starts)))
    steps = _ints(cx, node, 4, "steps") if node.has_input(4) else [1] * len(starts)
    clip = [min(max(v, -INT64_MAX), INT64_MAX) for v in ends]
    attrs = SliceAttrs(tuple(starts), tuple(clip), tuple(a % rank if rank else a for a in axes), tuple(steps))
    return cx.emit(node, "nn.slice", [cx.value(node, 0)], attrs)


@handler("Gather", ("axis",))
def gather(cx, node: Node):
    """Gather(data, indices; axis=0): folded on known integer tensors (symbolic shapes included)."""
    ks = [cx.known(node, i) for i in (0, 1)]
    if all(k is not None and k.integral for k in ks):
        return _fold_gather(cx, node)
    return cx.emit(node, "nn.gather", [cx.value(node, 0), cx.value(node, 1)], GatherAttrs(int(node.attr("axis", 0))))


@handler("GatherElements", ("axis",))
def gather_elements(cx, node: Node):
    """GatherElements(data, indices; axis=0)."""
    return _apply(cx, node, "nn.gather_elements", attrs=GatherAttrs(int(node.attr("axis", 0))))


@handler("Pad", ("mode",))
def pad(cx, node: Node):
    """Pad(data, pads, constant_value?, axes?; mode=constant): pads, value and axes known at import."""
    mode = node.attr("mode", "constant")
    if mode not in {m.value for m in PadMode}:
        raise node.reject(f"expected one of {sorted(m.value for m in PadMode)}", "mode")
    rank = cx.type(node, 0).rank
    given = _ints(cx, node, 1, "pads")
    axes = [a % rank for a in _ints(cx, node, 3, "axes")] if node.has_input(3) else list(range(rank))
    if len(given) != 2 * len(axes):
        raise node.reject(f"pads {given} must have 2 entries per padded axis ({len(axes)} axes)")
    pads = [0] * (2 * rank)
    for i, a in enumerate(axes):
        pads[a], pads[a + rank] = given[i], given[i + len(axes)]
    if any(p < 0 for p in pads):
        raise node.reject(f"negative pads {given} (cropping) are not supported")
    value = _scalar(cx, node, 2, "constant_value") if node.has_input(2) else 0.0
    attrs = PadAttrs(tuple(pads), PadMode(mode), float(value))
    return _apply(cx, node, "nn.pad", 1, attrs)


# -- casts and constants ------------------------------------------------------------------
def _cast_to(cx, node: Node, target: DType | None, what):
    """Cast input 0 to `target`: folded on known tensors, else nn.cast."""
    if target is None or target.is_fixed:
        to = node.attr("to")
        name = TensorProto.DataType.Name(to).lower() if what == "to" and to in TensorProto.DataType.values() \
            else str(target)
        raise node.reject(f"casts to element type {name} are not supported", what)
    k = cx.known(node, 0)
    if k is not None and not k.symbolic:
        return Known(k.array.astype(target.numpy), k.hint)
    if k is not None and target not in (DType.f16, DType.f32, DType.f64, DType.bool):
        return Known(k.array, k.hint)   # a symbolic shape stays symbolic through an integer cast
    return cx.emit(node, "nn.cast", [cx.value(node, 0)], CastAttrs(target))


@handler("Cast", ("to", "saturate", "round_mode"))
def cast(cx, node: Node):
    """Cast(input; to): between every element type mpc has (floats, integers, bool); saturate and
    round_mode change only casts to float8/float4 types, which are refused, so they are consumed."""
    return _cast_to(cx, node, ONNX_DTYPES.get(node.attr("to")), "to")


@handler("CastLike", ("saturate", "round_mode"))
def cast_like(cx, node: Node):
    """CastLike(input, target_type): Cast to the element type of the second input (saturate and
    round_mode: as for Cast)."""
    return _cast_to(cx, node, cx.type(node, 1).dtype, None)


@handler("Range", ("stash_type",))
def range_(cx, node: Node):
    """Range(start, limit, delta): folded at import (every input must be known)."""
    if "stash_type" in node.attrs:
        raise node.reject("stash_type is not supported (float16/bfloat16 ranges)", "stash_type")
    ks = [cx.known(node, i) for i in range(3)]
    if any(k is None or k.symbolic for k in ks):
        raise node.reject("Range is only supported on inputs known at import")
    start, limit, delta = (k.array.reshape(-1)[0] for k in ks)
    if delta == 0 or not np.isfinite(float(limit - start) / float(delta)):
        raise node.reject(f"Range({start}, {limit}, {delta}) has no finite length")
    n = max(math.ceil((limit - start) / delta), 0)
    dtype = ks[0].array.dtype
    return Known((start + np.arange(n, dtype=np.float64 if dtype.kind == "f" else dtype) * delta).astype(dtype),
                 node.outputs[0])


# the op types whose handlers live here (mpc/frontend/onnx.py imports this name to register them)
TENSOR_OPS = tuple(sorted(op for op, h in HANDLERS.items() if h.fn.__module__ == __name__))
