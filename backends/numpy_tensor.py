"""NumPy-backend renderings of the tensor, elementwise, logic and reduction op kinds (mpc/ir/ops_nn_tensor.py).

Each rendering is one call of a `mpc.tensor.kernels` function, whose module source model.py embeds
(`kernel_source`), so model.py runs the interpreter's own kernels. numpy_backend adds `RENDER` to its table.
"""
from __future__ import annotations

import enum
import inspect
import math

from mpc.ir import Op
from mpc.ir.ops_nn_tensor import BINARY, UNARY
from mpc.tensor import kernels

RENDER: dict = {}


def kernel_source() -> str:
    """The source of mpc.tensor.kernels as model.py embeds it."""
    return "# ---- tensor kernels: copied from mpc.tensor.kernels ----\n" + inspect.getsource(kernels)


def _unary(name: str):
    return lambda op, a: f"t_unary({name!r}, {a[0]})"


def _binary(name: str):
    return lambda op, a: f"t_binary({name!r}, {a[0]}, {a[1]})"


def _lit(v) -> str:
    """A Python literal of an attribute value (enums as their value, inf and nan spelled out)."""
    if isinstance(v, enum.Enum):
        v = v.value
    if isinstance(v, float) and not math.isfinite(v):
        return f"float('{v}')"
    return repr(v)


def _call(fn: str, *fields: str):
    """A rendering `fn(operands..., attribute values...)`."""
    def render(op: Op, a: list[str]) -> str:
        return f"{fn}({', '.join(a + [_lit(getattr(op.attrs, f)) for f in fields])})"
    return render


RENDER.update({f"nn.{n}": _unary(n) for n in UNARY})
RENDER.update({f"nn.{n}": _binary(n) for n in BINARY})
RENDER.update({
    "nn.isinf": _call("t_isinf", "detect_negative", "detect_positive"),
    "nn.mod": _call("t_mod", "fmod"),
    "nn.pow": _call("t_pow"),
    "nn.where": _call("t_where"),
    "nn.reduce": _call("t_reduce", "mode", "axes", "keepdims"),
    "nn.arg_reduce": _call("t_arg_reduce", "largest", "axis", "keepdims", "select_last_index"),
    "nn.expand": _call("t_expand", "shape"),
    "nn.tile": _call("t_tile", "repeats"),
    "nn.gather": _call("t_gather", "axis"),
    "nn.gather_elements": _call("t_gather_elements", "axis"),
    "nn.pad": _call("t_pad", "pads", "mode", "value"),
})


def _slice(op: Op, a: list[str]) -> str:
    at = op.attrs
    axes = tuple(ax % op.operands[0].type.rank for ax in at.axes)
    return f"t_slice({a[0]}, {at.starts!r}, {at.ends!r}, {axes!r}, {at.steps!r})"


RENDER["nn.slice"] = _slice
