"""NumPy-backend renderings of the spatial, normalization and activation ops (mpc.ir.ops_nn_spatial).

Each op renders as one call into `mpc.kernels_spatial`, whose source model.py embeds whole (it is
NumPy-only and self-contained), so model.py runs exactly the interpreter's reference kernels. The
NumPy backend merges `RENDER` into its table and embeds `source()` for these kinds (this module does
not import the backend, so that the two do not import each other).
"""
from __future__ import annotations

import enum
import inspect
import math
from collections.abc import Callable

from mpc import kernels_spatial
from mpc.ir.ops_nn_spatial import ACTIVATIONS
from mpc.ir.printer import format_literal

RENDER: dict[str, Callable] = {}


def source() -> str:
    """The kernels of mpc.kernels_spatial, embedded as plain code (no numba, no cache needed)."""
    return ("# ---- spatial kernels: copied from mpc.kernels_spatial (the interpreter runs the same code) ----\n"
            + inspect.getsource(kernels_spatial))


def renders(*kinds: str):
    """Register a render function for op kinds."""
    def deco(fn):
        for k in kinds:
            RENDER[k] = fn
        return fn
    return deco


def _lit(v) -> str:
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else f"float('{format_literal(v)}')"
    if isinstance(v, tuple):
        return "(" + "".join(f"{_lit(x)}, " for x in v) + ")"
    return repr(v)


def _values(attrs) -> str:
    return ", ".join(_lit(v.value if isinstance(v, enum.Enum) else v) for v in vars(attrs).values())


def _opt(a: list[str], i: int) -> str:
    return a[i] if len(a) > i else "None"


def _window(at) -> str:
    return f"{_lit(at.kernel)}, {_lit(at.strides)}, {_lit(at.pads)}, {_lit(at.dilations)}, {at.ceil_mode}"


@renders("nn.conv")
def _conv(op, a):
    at = op.attrs
    return (f"conv_nd({a[0]}, {a[1]}, {_opt(a, 2)}, {_lit(at.strides)}, {_lit(at.pads)}, {_lit(at.dilations)}, "
            f"{at.group})")


@renders("nn.conv_transpose")
def _conv_transpose(op, a):
    at = op.attrs
    return (f"conv_transpose_nd({a[0]}, {a[1]}, {_opt(a, 2)}, {_lit(at.strides)}, {_lit(at.pads)}, "
            f"{_lit(at.dilations)}, {at.group}, {_lit(at.output_padding)})")


@renders("nn.maxpool")
def _maxpool(op, a):
    return f"maxpool_nd({a[0]}, {_window(op.attrs)})"


@renders("nn.maxpool_indices")
def _maxpool_indices(op, a):
    return f"maxpool_indices({a[0]}, {_window(op.attrs)}, {op.attrs.storage_order})"


@renders("nn.avgpool")
def _avgpool(op, a):
    return f"avgpool_nd({a[0]}, {_window(op.attrs)}, {op.attrs.count_include_pad})"


@renders("nn.global_maxpool")
def _global_maxpool(op, a):
    return f"global_maxpool({a[0]})"


@renders("nn.resize")
def _resize(op, a):
    at = op.attrs
    dims = "".join(f"{a[0]}.shape[{i}], " if isinstance(d, str) else f"{s}, "
                   for i, (d, s) in enumerate(zip(op.operands[0].type.shape, at.sizes)))
    return (f"resize({a[0]}, ({dims}), {_lit(at.scales)}, {at.mode.value!r}, {at.coord_mode.value!r}, "
            f"{at.nearest_mode.value!r}, {_lit(at.cubic_coeff_a)}, {at.exclude_outside})")


@renders("nn.layernorm")
def _layernorm(op, a):
    return f"layernorm({a[0]}, {a[1]}, {_opt(a, 2)}, {_values(op.attrs)})"


@renders("nn.layernorm_stats")
def _layernorm_stats(op, a):
    at = op.attrs
    return (f"layernorm_stats({a[0]}, {a[1]}, {_opt(a, 2)}, {at.axis}, {_lit(at.epsilon)}, "
            f"{at.stash.numpy.name!r})")


@renders("nn.instancenorm")
def _instancenorm(op, a):
    return f"instancenorm({a[0]}, {a[1]}, {a[2]}, {_values(op.attrs)})"


@renders("nn.groupnorm")
def _groupnorm(op, a):
    return f"groupnorm({a[0]}, {a[1]}, {a[2]}, {_values(op.attrs)})"


@renders("nn.lrn")
def _lrn(op, a):
    return f"lrn({a[0]}, {_values(op.attrs)})"


@renders("nn.prelu")
def _prelu(op, a):
    return f"prelu({a[0]}, {a[1]})"


def _activation(fn: str):
    def render(op, a):
        values = _values(op.attrs)
        return f"{fn}({a[0]}, {values})" if values else f"{fn}({a[0]})"
    return render


for _kind, (_fn, _attrs, _summary) in ACTIVATIONS.items():
    renders(_kind)(_activation(_fn))
