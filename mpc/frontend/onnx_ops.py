"""ONNX operator handlers: one per op type, shaped like the ONNX spec (opset 13+), defaults included.

A handler gets the import context (`Importer` of mpc/frontend/onnx.py) and a `Node`; it returns
the value of the node's first output: an IR `Value` it emitted, or a `Known` constant. Every
handler declares the attributes it knows; the importer rejects any other attribute, and the
handler rejects the values it cannot honour, naming op, node, attribute and value.

Integer tensors known at import time (Shape -> Gather -> Concat chains feeding Reshape, axes
inputs) are folded here as `Known` arrays and never become weights; a dim that depends on a
symbolic input dim is carried as its name (str) or as None when it is computed from one.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from mpc.errors import Location, UnsupportedOp
from mpc.frontend.constants import constant as const_input
from mpc.ir import DType
from mpc.ir.ops_nn import (
    AxesAttrs,
    AxisAttrs,
    BatchNormAttrs,
    CastAttrs,
    ClipAttrs,
    DropoutAttrs,
    FlattenAttrs,
    GemmAttrs,
    LeakyReluAttrs,
    PermAttrs,
    ReshapeAttrs,
)

ONNX_DTYPES = {TensorProto.FLOAT: DType.f32, TensorProto.DOUBLE: DType.f64, TensorProto.INT64: DType.i64,
               TensorProto.INT32: DType.i32, TensorProto.INT8: DType.i8, TensorProto.BOOL: DType.bool}


@dataclass(frozen=True, eq=False)
class Known:
    """A tensor known at import time: an initializer, a Constant, or a folded integer computation.

    `array` has dtype object when some entries depend on symbolic dims (a str: that dim; None: a
    value computed from one). `hint` is the ONNX name a weight made from it is named after.
    """

    array: np.ndarray
    hint: str

    @property
    def integral(self) -> bool:
        """True for integer, bool and symbolic (object) arrays: the ones folded at import."""
        return self.array.dtype.kind in "iubO"

    @property
    def symbolic(self) -> bool:
        """True when some entry depends on a symbolic dim."""
        return self.array.dtype == object and not all(_is_int(x) for x in self.array.flat)


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer))


class Node:
    """An ONNX node with its decoded attributes and a stable name."""

    def __init__(self, proto: onnx.NodeProto, name: str):
        self.op_type, self.name = proto.op_type, name
        self.inputs, self.outputs = list(proto.input), list(proto.output)
        self.attrs = {a.name: _attr_value(a) for a in proto.attribute}

    def attr(self, key: str, default=None):
        """The attribute's value, or `default` when absent."""
        return self.attrs.get(key, default)

    def has_input(self, i: int) -> bool:
        """Whether optional input `i` is given (ONNX writes an absent one as '')."""
        return i < len(self.inputs) and self.inputs[i] != ""

    def reject(self, reason: str, attribute: str | None = None) -> UnsupportedOp:
        """An UnsupportedOp for this node, naming the attribute and its value when given."""
        value = self.attrs.get(attribute) if attribute is not None else None
        return UnsupportedOp(self.op_type, Location(node=self.name), reason, attribute=attribute, value=value)


def _attr_value(a: onnx.AttributeProto):
    """The Python value of an attribute; float32 values as their shortest decimal (0.001, not
    0.0010000000474974513), which is the same float32."""
    v = onnx.helper.get_attribute_value(a)
    if a.type == onnx.AttributeProto.FLOAT:
        return float(str(np.float32(v)))
    if a.type == onnx.AttributeProto.FLOATS:
        return [float(str(np.float32(x))) for x in v]
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [x.decode("utf-8", "replace") for x in v]
    return v


@dataclass(frozen=True)
class Handler:
    """How one ONNX op type is imported: the function and the attributes it consumes."""

    op_type: str
    fn: Callable
    attrs: frozenset[str]


HANDLERS: dict[str, Handler] = {}


def handler(op_type: str, attrs: tuple[str, ...] = ()):
    """Register the handler of `op_type`, which consumes exactly `attrs`."""
    def deco(fn):
        HANDLERS[op_type] = Handler(op_type, fn, frozenset(attrs))
        return fn
    return deco


def supported_ops() -> list[str]:
    """ONNX op types with a handler, sorted."""
    return sorted(HANDLERS)


# -- helpers ------------------------------------------------------------------------------
def _all_known(cx, node: Node, indices) -> list[Known] | None:
    ks = [cx.known(node, i) for i in indices]
    return ks if all(k is not None and k.integral for k in ks) else None


def _fold(node: Node, array) -> Known:
    """A folded result; object arrays whose entries are all ints become int64 again."""
    if not isinstance(array, (np.ndarray, np.generic)):
        array = np.array(array, dtype=object)
    array = np.asarray(array)
    if array.dtype == object and all(_is_int(x) for x in array.flat):
        array = array.astype(np.int64)
    return Known(array, node.outputs[0])


def _ints(cx, node: Node, i: int, what: str) -> list[int]:
    """A constant integer input (axes, shapes) as Python ints; UnsupportedOp when computed."""
    k = cx.known(node, i)
    if k is not None and k.symbolic:
        raise node.reject(f"{what} (input '{node.inputs[i]}') depends on a dynamic dim: {_show(k.array)}")
    return [int(x) for x in const_input(cx, node, i, what).reshape(-1)]


def _scalar(cx, node: Node, i: int, what: str) -> float:
    a = const_input(cx, node, i, what)
    if a.size != 1 or a.dtype == object:
        raise node.reject(f"{what} (input '{node.inputs[i]}') must be a constant scalar, got shape {list(a.shape)}")
    x = a.reshape(-1)[0]
    return float(str(x)) if a.dtype == np.float32 else float(x)  # float32 0.7 stays 0.7


def _show(a: np.ndarray) -> str:
    return "[" + ", ".join("?" if x is None else str(x) for x in np.asarray(a).reshape(-1)) + "]"


def _int_op(fn, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """An integer op on possibly symbolic arrays: entries touching a symbol become unknown (None)."""
    if a.dtype != object and b.dtype != object:
        return np.asarray(fn(a, b))

    def entry(u, v):
        ok = _is_int(u) and _is_int(v)
        return int(fn(np.int64(u), np.int64(v))) if ok else None
    return np.frompyfunc(entry, 2, 1)(a, b)


def _int_div(a, b):
    """ONNX integer Div truncates toward zero."""
    return np.where((a < 0) ^ (b < 0), -(np.abs(a) // np.abs(b)), np.abs(a) // np.abs(b)).astype(a.dtype)


def _no_extra_outputs(node: Node, what: str) -> None:
    for name in node.outputs[1:]:
        if name:
            raise node.reject(f"{what} output '{name}' is not supported")


# -- elementwise --------------------------------------------------------------------------
def _binary(kind: str, fold):
    def fn(cx, node: Node):
        ks = _all_known(cx, node, (0, 1))
        if ks is not None:
            return _fold(node, _int_op(fold, ks[0].array, ks[1].array))
        return cx.emit(node, kind, [cx.value(node, 0), cx.value(node, 1)])
    return fn


for _op, _kind, _f in [("Add", "nn.add", np.add), ("Sub", "nn.sub", np.subtract),
                       ("Mul", "nn.mul", np.multiply), ("Div", "nn.div", _int_div)]:
    handler(_op)(_binary(_kind, _f))


def _unary(kind: str):
    def fn(cx, node: Node):
        return cx.emit(node, kind, [cx.value(node, 0)])
    return fn


for _op, _kind in [("Relu", "nn.relu"), ("Sigmoid", "nn.sigmoid"), ("Tanh", "nn.tanh"),
                   ("GlobalAveragePool", "nn.global_avgpool")]:
    handler(_op)(_unary(_kind))


@handler("LeakyRelu", ("alpha",))
def leaky_relu(cx, node: Node):
    """LeakyRelu(X; alpha=0.01)."""
    attrs = LeakyReluAttrs(float(node.attr("alpha", 0.01)))
    return cx.emit(node, "nn.leaky_relu", [cx.value(node, 0)], attrs)


@handler("Softmax", ("axis",))
def softmax(cx, node: Node):
    """Softmax(input; axis=-1), opset 13 semantics (one axis)."""
    return cx.emit(node, "nn.softmax", [cx.value(node, 0)], AxisAttrs(int(node.attr("axis", -1))))


@handler("Clip")
def clip(cx, node: Node):
    """Clip(input, min?, max?): constant bounds become attributes."""
    lo = _scalar(cx, node, 1, "min") if node.has_input(1) else -math.inf
    hi = _scalar(cx, node, 2, "max") if node.has_input(2) else math.inf
    return cx.emit(node, "nn.clip", [cx.value(node, 0)], ClipAttrs(lo, hi))


@handler("Identity")
def identity(cx, node: Node):
    """Identity(input): a constant passes through under the output's name."""
    k = cx.known(node, 0)
    if k is not None:
        return Known(k.array, node.outputs[0])
    return cx.emit(node, "nn.identity", [cx.value(node, 0)])


@handler("Dropout", ("seed",))
def dropout(cx, node: Node):
    """Dropout(data, ratio?, training_mode?) in inference: identity; a used mask is unsupported."""
    ratio = _scalar(cx, node, 1, "ratio") if node.has_input(1) else 0.5
    if node.has_input(2) and _scalar(cx, node, 2, "training_mode"):
        raise node.reject("training_mode=true is not supported (inference only)")
    if len(node.outputs) > 1 and cx.used(node.outputs[1]):
        raise node.reject(f"the mask output '{node.outputs[1]}' is used; only inference dropout is supported")
    return cx.emit(node, "nn.dropout", [cx.value(node, 0)], DropoutAttrs(ratio))


@handler("Cast", ("to", "saturate", "round_mode"))
def cast(cx, node: Node):
    """Cast(input; to): to float/double; integer casts only on constants (saturate and round_mode
    only affect float8/float4 targets, which are rejected)."""
    target = ONNX_DTYPES.get(node.attr("to"))
    k = cx.known(node, 0)
    if k is not None and target is not None:
        if not k.symbolic:
            return Known(k.array.astype(target.numpy), k.hint)
        if target not in (DType.f32, DType.f64, DType.bool):
            return Known(k.array, k.hint)
    if target not in (DType.f32, DType.f64):
        raise node.reject("only casts to float or double are supported on computed tensors", "to")
    return cx.emit(node, "nn.cast", [cx.value(node, 0)], CastAttrs(target))


@handler("Constant", ("value", "value_float", "value_floats", "value_int", "value_ints", "sparse_value",
                      "value_string", "value_strings"))
def constant(cx, node: Node):
    """Constant(value | value_float(s) | value_int(s)): a known tensor (a weight once used)."""
    makers = {"value": numpy_helper.to_array, "value_float": lambda v: np.array(v, np.float32),
              "value_floats": lambda v: np.array(v, np.float32), "value_int": lambda v: np.array(v, np.int64),
              "value_ints": lambda v: np.array(v, np.int64)}
    for key, make in makers.items():
        if key in node.attrs:
            return _fold(node, make(node.attrs[key]))
    key = next(iter(node.attrs), None)
    raise node.reject("only numeric dense constants are supported", key)


# -- matmul, gemm -------------------------------------------------------------------------
@handler("MatMul")
def matmul(cx, node: Node):
    """MatMul(A, B) with NumPy semantics."""
    return cx.emit(node, "nn.matmul", [cx.value(node, 0), cx.value(node, 1)])


@handler("Gemm", ("alpha", "beta", "transA", "transB"))
def gemm(cx, node: Node):
    """Gemm(A, B, C?; alpha=1, beta=1, transA=0, transB=0)."""
    attrs = GemmAttrs(float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0)),
                      bool(node.attr("transA", 0)), bool(node.attr("transB", 0)))
    operands = [cx.value(node, 0), cx.value(node, 1)] + ([cx.value(node, 2)] if node.has_input(2) else [])
    return cx.emit(node, "nn.gemm", operands, attrs)


# -- normalization (convolution and pooling: onnx_ops_spatial) -------------------------
@handler("BatchNormalization", ("epsilon", "momentum", "training_mode"))
def batchnorm(cx, node: Node):
    """BatchNormalization(X, scale, B, mean, var; epsilon=1e-5) in inference mode (momentum unused)."""
    if node.attr("training_mode", 0) != 0:
        raise node.reject("only inference (training_mode=0) is supported", "training_mode")
    _no_extra_outputs(node, "the running statistics")
    operands = [cx.value(node, i) for i in range(5)]
    return cx.emit(node, "nn.batchnorm", operands, BatchNormAttrs(float(node.attr("epsilon", 1e-5))))


@handler("ReduceMean", ("axes", "keepdims", "noop_with_empty_axes"))
def reduce_mean(cx, node: Node):
    """ReduceMean(data, axes?; keepdims=1) over exactly the spatial dims: a global average pool
    (what the dynamo exporter emits for adaptive_avg_pool2d(x, 1) and x.mean((2, 3)))."""
    t = cx.type(node, 0)
    axes = node.attr("axes", [])  # an attribute up to opset 17, an optional input since 18
    if node.has_input(1):
        axes = _ints(cx, node, 1, "axes")
    spatial = list(range(2, t.rank))
    if not axes and node.attr("noop_with_empty_axes", 0):
        return cx.emit(node, "nn.identity", [cx.value(node, 0)])
    if t.rank < 3 or sorted({a % t.rank for a in axes}) != spatial or len(axes) != len(spatial):
        raise node.reject(f"only a mean over all spatial dims (axes {spatial} of {t}) is supported")
    if node.attr("keepdims", 1):
        return cx.emit(node, "nn.global_avgpool", [cx.value(node, 0)])
    pooled = cx.emit(node, "nn.global_avgpool", [cx.value(node, 0)], step="pool")
    return cx.emit(node, "nn.squeeze", [pooled], AxesAttrs(tuple(spatial)))


# -- shape ops ----------------------------------------------------------------------------
@handler("Flatten", ("axis",))
def flatten(cx, node: Node):
    """Flatten(input; axis=1)."""
    return cx.emit(node, "nn.flatten", [cx.value(node, 0)], FlattenAttrs(int(node.attr("axis", 1))))


def _reshape_target(node: Node, shape_in, target: np.ndarray, allowzero: bool) -> tuple[int, ...]:
    """The IR reshape target of a known ONNX one: a symbolic entry equal to the input dim at the same
    position copies it (0); one entry computed from a symbolic dim is inferred (-1), since the
    model is valid that is exactly its value."""
    dims = list(target.reshape(-1))
    known = [int(d) for d in dims if _is_int(d)]
    if allowzero and 0 in known:
        raise node.reject("allowzero=1 with a 0 in the shape (an empty tensor) is not supported", "allowzero")
    out = []
    for i, d in enumerate(dims):
        if _is_int(d):
            out.append(int(d))
        else:
            out.append(0 if i < len(shape_in) and d == shape_in[i] else -1)
    if out.count(-1) > 1:
        raise node.reject(f"target shape {_show(target)} depends on dynamic dims in a way that cannot be "
                          f"resolved at import (only dims copied from the input and one inferred dim can)")
    return tuple(out)


@handler("Reshape", ("allowzero",))
def reshape(cx, node: Node):
    """Reshape(data, shape; allowzero=0): the shape must be known at import."""
    shape = cx.known(node, 1)
    if shape is None:   # folded when computed from constants, else one line naming the input
        shape = Known(const_input(cx, node, 1, "the shape", "it fixes the output's shape"), node.inputs[1])
    allowzero = bool(node.attr("allowzero", 0))
    data = cx.known(node, 0)
    if data is not None and data.integral and not shape.symbolic:
        dims = [int(d) for d in shape.array.reshape(-1)]
        dims = [data.array.shape[i] if d == 0 and not allowzero else d for i, d in enumerate(dims)]
        return _fold(node, data.array.reshape(dims))
    shape_in = cx.type(node, 0).shape
    target = _reshape_target(node, shape_in, shape.array, allowzero)
    if cx.batch is not None and shape_in and shape_in[0] == cx.batch and target[0] == 1:
        target = (0,) + target[1:]   # a static batch's 1 kept in front (x.view(1, -1)): follow the batch
    return cx.emit(node, "nn.reshape", [cx.value(node, 0)], ReshapeAttrs(target))


@handler("Transpose", ("perm",))
def transpose(cx, node: Node):
    """Transpose(data; perm=reversed dims)."""
    rank = cx.type(node, 0).rank
    perm = tuple(int(p) for p in node.attr("perm", range(rank - 1, -1, -1)))
    k = cx.known(node, 0)
    if k is not None and k.integral:
        return _fold(node, np.transpose(k.array, perm))
    return cx.emit(node, "nn.transpose", [cx.value(node, 0)], PermAttrs(perm))


@handler("Concat", ("axis",))
def concat(cx, node: Node):
    """Concat(inputs...; axis)."""
    axis = int(node.attr("axis"))
    ks = _all_known(cx, node, range(len(node.inputs)))
    if ks is not None:
        return _fold(node, np.concatenate([k.array for k in ks], axis=axis))
    return cx.emit(node, "nn.concat", [cx.value(node, i) for i in range(len(node.inputs))], AxisAttrs(axis))


@handler("Squeeze")
def squeeze(cx, node: Node):
    """Squeeze(data, axes?): without axes, every dim of static size 1."""
    t = cx.type(node, 0)
    if node.has_input(1):
        axes = tuple(_ints(cx, node, 1, "axes"))
    elif all(isinstance(d, int) for d in t.shape):
        axes = tuple(i for i, d in enumerate(t.shape) if d == 1)
    else:
        raise node.reject(f"squeeze without axes needs a static shape, got {t}")
    k = cx.known(node, 0)
    if k is not None and k.integral:
        return _fold(node, np.squeeze(k.array, axis=axes))
    return cx.emit(node, "nn.squeeze", [cx.value(node, 0)], AxesAttrs(axes))


@handler("Unsqueeze")
def unsqueeze(cx, node: Node):
    """Unsqueeze(data, axes): axes must be a constant."""
    axes = tuple(_ints(cx, node, 1, "axes"))
    k = cx.known(node, 0)
    if k is not None and k.integral:
        rank = k.array.ndim + len(axes)
        return _fold(node, np.expand_dims(k.array, tuple(sorted(a % rank for a in axes))))
    return cx.emit(node, "nn.unsqueeze", [cx.value(node, 0)], AxesAttrs(axes))


# -- integer helpers, folded at import only -----------------------------------------------
def _fold_only(node: Node, what: str) -> UnsupportedOp:
    return node.reject(f"{what} is only supported on tensors known at import (shape computations)")


@handler("Shape", ("start", "end"))
def shape(cx, node: Node):
    """Shape(data; start=0, end=rank): static dims as ints, symbolic dims by name."""
    dims = list(cx.type(node, 0).shape)
    start, end = node.attr("start", 0), node.attr("end", len(dims))
    dims = dims[start:end]
    if all(isinstance(d, int) for d in dims):
        return _fold(node, np.array(dims, np.int64))
    return _fold(node, np.array(dims, dtype=object))


@handler("Gather", ("axis",))
def gather(cx, node: Node):
    """Gather(data, indices; axis=0) on known tensors."""
    ks = _all_known(cx, node, (0, 1))
    if ks is None:
        raise _fold_only(node, "Gather")
    return _fold(node, np.take(ks[0].array, ks[1].array.astype(np.int64), axis=int(node.attr("axis", 0))))


@handler("Slice")
def slice_(cx, node: Node):
    """Slice(data, starts, ends, axes?, steps?) on known tensors."""
    data = cx.known(node, 0)
    if data is None or not data.integral:
        raise _fold_only(node, "Slice")
    starts, ends = _ints(cx, node, 1, "starts"), _ints(cx, node, 2, "ends")
    axes = _ints(cx, node, 3, "axes") if node.has_input(3) else list(range(len(starts)))
    steps = _ints(cx, node, 4, "steps") if node.has_input(4) else [1] * len(starts)
    index = [slice(None)] * data.array.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[a] = slice(s, e, st)
    return _fold(node, data.array[tuple(index)])


@handler("ConstantOfShape", ("value",))
def constant_of_shape(cx, node: Node):
    """ConstantOfShape(input; value=float 0): a known tensor."""
    dims = _ints(cx, node, 0, "shape")
    value = node.attr("value")
    fill = numpy_helper.to_array(value).reshape(-1) if value is not None else np.zeros(1, np.float32)
    return _fold(node, np.full(dims, fill[0], dtype=fill.dtype))
