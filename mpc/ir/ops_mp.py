"""The `mp` op family: multiplierless margin-propagation layers (Nair et al., IEEE TVLSI 2022).

    mp.dot(x, w, gain[, offset])     y[.., h] = gain[h] * y_MP(x[..]·c, w[h]/c; γ) + offset[h]
    mp.conv2d(x, w, gain[, offset])  the same over the im2col patches of a 2-D convolution

with y_MP(x, w; γ) = (γD/2)(α(p) − α(q)), p = [w + x; −w − x], q = [w − x; −w + x] and α the
threshold with Σ_i [p_i − α]_+ = γ. `w` holds the dense weight W (one row of D per output), `c` is
a power-of-two balance scale (a shift on x; W/c is exact), `gain` and `offset` are per-output
weights. `gain_terms` > 0 states that every gain[h]·γD/2 — the one constant applied to α − β in
hardware — is a sum of at most that many signed powers of two; the verifier checks it.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from mpc import kernels_np as K
from mpc.ir.opdefs import InferError, define
from mpc.ir.types import DType

FLOATS = (DType.f32, DType.f64)


@dataclass(frozen=True)
class MPDotAttrs:
    gamma: float
    c: float = 1.0
    gain_terms: int = 0


@dataclass(frozen=True)
class MPConvAttrs:
    gamma: float
    c: float = 1.0
    gain_terms: int = 0
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilations: tuple[int, int] = (1, 1)
    group: int = 1


def is_power_of_two(v: float) -> bool:
    """True for 2^k, k any integer."""
    if not (v > 0 and math.isfinite(v)):
        return False
    m, _ = math.frexp(v)
    return m == 0.5


def snap_shift_add(v: float, terms: int) -> tuple[float, int]:
    """The closest sum of at most `terms` signed powers of two to v, and how many it uses."""
    if v == 0 or terms == 0 or not math.isfinite(v):
        return 0.0, 0
    e = math.floor(math.log2(abs(v)))
    best = (math.inf, 0.0, 0)
    for p in (e, e + 1):                      # the two powers of two around |v|
        t = math.copysign(2.0 ** p, v)
        rest, used = snap_shift_add(v - t, terms - 1) if v != t else (0.0, 0)
        err = abs(v - t - rest)
        if (err, used + 1) < best[::2]:
            best = (err, t + rest, used + 1)
    return best[1], best[2]


def shift_add_terms(v: float, limit: int = 8, rtol: float = 1e-6) -> int:
    """Fewest signed power-of-two terms (<= limit) within rtol of v; limit + 1 when there is none."""
    for k in range(limit + 1):
        approx, _ = snap_shift_add(v, k)
        if abs(approx - v) <= rtol * abs(v):
            return k
    return limit + 1


def _check_mp_attrs(a) -> None:
    if not (a.gamma > 0 and math.isfinite(a.gamma)):
        raise InferError(f"gamma must be finite and > 0, got {a.gamma}")
    if not is_power_of_two(a.c):
        raise InferError(f"balance scale c must be a power of two, got {a.c}")
    if a.gain_terms < 0:
        raise InferError(f"gain_terms must be >= 0, got {a.gain_terms}")


def _check_vectors(types, n_out) -> None:
    for t, role in zip(types[2:], ("gain", "offset")):
        if t.shape != (n_out,) or t.dtype != types[0].dtype:
            raise InferError(f"{role} must be {types[0].dtype}[{n_out}], got {t}")


def _dot_infer(types, a):
    x, w = types[0], types[1]
    _check_mp_attrs(a)
    if x.dtype not in FLOATS or w.dtype != x.dtype:
        raise InferError(f"mp.dot wants float operands of one dtype, got {x} and {w}")
    if x.rank < 1 or w.rank != 2 or x.shape[-1] != w.shape[1]:
        raise InferError(f"mp.dot wants x [.., D] and w [H, D], got {x} and {w}")
    _check_vectors(types, w.shape[0])
    return [x.with_shape(x.shape[:-1] + (w.shape[0],))]


def _conv_infer(types, a):
    x, w = types[0], types[1]
    _check_mp_attrs(a)
    if x.dtype not in FLOATS:
        raise InferError(f"mp.conv2d wants f32 or f64 operands, got {x}")
    from mpc.ir.ops_nn import _conv_infer as nn_conv_infer
    out = nn_conv_infer(types[:2], a)
    _check_vectors(types, w.shape[0])
    return out


def _gain_verify(op, graph) -> None:
    a = op.attrs
    if a.gain_terms == 0 or not op.operands[2].is_weight:
        return
    d = int(np.prod(op.operands[1].type.shape[1:]))
    scale = a.gamma * d / 2
    for h, g in enumerate(np.asarray(graph.weights[op.operands[2].name], np.float64)):
        if shift_add_terms(float(g) * scale, a.gain_terms) > a.gain_terms:
            raise InferError(f"gain[{h}]·γD/2 = {float(g) * scale!r} needs more than {a.gain_terms} "
                             f"signed power-of-two terms")


def _dot(k, x, w, gain, offset=None):
    from mpc.mp import mp_dot
    return K.mp_dense(mp_dot, x, w, gain, offset, k.attrs.gamma, k.attrs.c)


def _conv(k, x, w, gain, offset=None):
    from mpc.ir.ops_nn import folded
    from mpc.mp import mp_dot
    a = k.attrs
    return folded(functools.partial(K.mp_conv2d, mp_dot))(x, w, gain, offset, a.gamma, a.c, a.strides, a.pads,
                                                          a.dilations, a.group)


# Pure but not foldable: an MP op is a layer of the multiplierless datapath whose γ, c, gains and
# offsets mp-calibrate sets later; evaluating it on weights would bake the uncalibrated approximation
# into a float constant and drop the layer from the datapath.
define("mp.dot", ("x", "w", "gain", "offset?"), "gain * y_MP(x*c, w/c; gamma) + offset",
       _dot_infer, _dot, MPDotAttrs, verify=_gain_verify, traits=("pure",))
define("mp.conv2d", ("x", "w", "gain", "offset?"), "MP over the im2col patches of a 2-D convolution",
       _conv_infer, _conv, MPConvAttrs, verify=_gain_verify, traits=("pure",))

__all__ = ["MPConvAttrs", "MPDotAttrs", "is_power_of_two", "shift_add_terms", "snap_shift_add"]
