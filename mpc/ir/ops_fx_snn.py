"""Fixed-point spiking ops (`fx.encode`, `fx.lif`, `fx.decode`): integer forms of snn.encode/lif/decode.

Time is the leading axis, as in the snn family: values are `[T, N, ...]`. The kernels are the
bit-accurate emulator that the C backend (and any hardware backend) must match bit for bit.

    fx.encode(q)                 [N, ...] -> [T, N, ...]: the stored integers repeated at every step
                                 (a constant input current); same type.
    fx.lif(x, theta, u0)         integer LIF neurons. x: fx<W,F> currents [T, N, C, ...]; theta and u0:
                                 weights of stored integers at x's fraction F, a scalar ([] or [1]) or one
                                 per channel [C] (axis 2 of x); result: spikes as fx<2,0> (stored 0 or 1).
    fx.snn_maxpool(x)            spiking max-pool of [T, N, C, H, W] (no pads, no dilation): at step t each
                                 window passes the value of its leader, the unit with the highest integer
                                 count of non-zero steps over 0..t; the leader changes only to a unit whose
                                 count exceeds its own (the first such in row-major order, at the highest
                                 count), and starts as the window's first unit; same type as x.
    fx.decode(x)                 [T, N, ...] -> [N, ...]: the exact integer sum over time, read at the
                                 result fraction (mode sum: F; mode mean: F + log2 T, T a power of two,
                                 so the mean needs no division), then overflow to the result width.

Exact integer semantics of fx.lif, per unit (all arithmetic on int64 stored integers):

    u = u0;  wait = 0
    for t in 0..T-1:
        if wait > 0:  wait -= 1;  s_t = 0;  continue            (refractory: input ignored, u held)
        v = rshift(beta * u, beta_frac) + x_t                    (leak; rshift rounds by `rounding`:
                                                                  floor(v / 2^b), or floor((v + 2^(b-1)) / 2^b))
        v = overflow(v, mem_bits)                                (saturate or wrap to a mem_bits signed range)
        if v >= theta:  s_t = 1;  v = v - theta (reset soft) or 0 (reset zero);  wait = refractory
        else:           s_t = 0
        u = v

With beta == 2^beta_frac (no leak, the IF neuron) the leak step is the identity and a backend needs
no multiply. The quantize pass sizes mem_bits so that v never overflows (|u0| + |theta| + T·max|x|).
theta must be >= 1 (so a reset never increases |v|); |u0| must fit in mem_bits.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from mpc.fx import arith as A
from mpc.fx import tally as C
from mpc.fx.arith import Overflow, Rounding
from mpc.ir.opdefs import InferError, define
from mpc.ir.ops_snn import ResetMode
from mpc.ir.types import DType, TensorType

MEM_MAX = 62   # membrane bits: beta * u must fit in int64 (checked with beta's bits)
PURE = frozenset({"pure"})   # deterministic (no RNG): the state lives inside the kernel, along time


class SumMode(enum.Enum):
    """What fx.decode's sum over time stands for: the sum itself, or the mean (T a power of two)."""

    SUM = "sum"
    MEAN = "mean"


@dataclass(frozen=True)
class FxEncodeAttrs:
    timesteps: int


@dataclass(frozen=True)
class FxLIFAttrs:
    mem_bits: int
    beta: int = 1
    beta_frac: int = 0
    reset: ResetMode = ResetMode.SOFT
    refractory: int = 0
    rounding: Rounding = Rounding.NEAREST
    overflow: Overflow = Overflow.SATURATE


@dataclass(frozen=True)
class FxDecodeAttrs:
    to: DType
    mode: SumMode = SumMode.MEAN
    overflow: Overflow = Overflow.SATURATE


SPIKE = DType.make("fx", (2, 0))   # the type of fx.lif's spikes: stored 0 or 1


def _fx(t: TensorType, role: str, limit: int = 32) -> DType:
    if t.dtype.kind != "fx" or t.dtype.width > limit:
        raise InferError(f"{role} must be signed fixed point fx<W,F> of at most {limit} bits, got {t}")
    return t.dtype


def _encode_infer(types, a):
    x = types[0]
    _fx(x, "fx.encode's operand", 62)
    if a.timesteps < 1:
        raise InferError(f"timesteps must be >= 1, got {a.timesteps}")
    return [x.with_shape((a.timesteps,) + x.shape)]


def _state_infer(x: TensorType, t: TensorType, role: str) -> None:
    if t.dtype.kind != "fx" or t.dtype.frac != x.dtype.frac:
        raise InferError(f"{role} must be fx<W,{x.dtype.frac}> (x's fraction), got {t}")
    if t.shape not in ((), (1,), (x.shape[2],)):
        raise InferError(f"{role} must be a scalar or one per channel [{x.shape[2]}], got {t}")


def _lif_infer(types, a):
    x, theta, u0 = types
    _fx(x, "fx.lif's current x")
    if x.rank < 3:
        raise InferError(f"fx.lif wants time-major currents [T, N, C, ...], got {x}")
    _state_infer(x, theta, "theta")
    _state_infer(x, u0, "u0")
    if not x.dtype.width <= a.mem_bits <= MEM_MAX:
        raise InferError(f"mem_bits must be from x's width {x.dtype.width} to {MEM_MAX}, got {a.mem_bits}")
    if a.beta_frac < 0 or not 0 <= a.beta <= 1 << a.beta_frac:
        raise InferError(f"beta must be a stored integer in [0, 2^beta_frac], got {a.beta} (beta_frac {a.beta_frac})")
    if a.mem_bits + a.beta_frac + 1 > 63:
        raise InferError(f"beta * u needs {a.mem_bits + a.beta_frac + 1} bits (> 63)")
    if a.refractory < 0:
        raise InferError(f"refractory must be >= 0, got {a.refractory}")
    return [TensorType(SPIKE, x.shape)]


def _lif_verify(op, graph) -> None:
    """theta and u0 are weights; theta >= 1 and u0 inside the membrane's range."""
    for v in op.operands[1:]:
        if not v.is_weight:
            raise InferError(f"fx.lif's {'theta' if v is op.operands[1] else 'u0'} must be a weight")
    theta, u0 = (graph.weights[v.name] for v in op.operands[1:])
    if theta.size and int(theta.min()) < 1:
        raise InferError("theta holds values below 1 (stored integers)")
    lim = 1 << (op.attrs.mem_bits - 1)
    if u0.size and (int(u0.min()) < -lim or int(u0.max()) >= lim):
        raise InferError(f"u0 holds values outside the {op.attrs.mem_bits}-bit membrane")


def _decode_infer(types, a):
    x = types[0]
    xd = _fx(x, "fx.decode's operand", 62)
    if x.rank < 2:
        raise InferError(f"fx.decode wants a time-major operand [T, N, ...], got {x}")
    steps = x.shape[0]
    if not isinstance(steps, int):
        raise InferError(f"fx.decode needs a static step count, got {x}")
    shift = 0
    if a.mode is SumMode.MEAN:
        if steps & (steps - 1):
            raise InferError(f"mode mean divides by a shift: the step count {steps} must be a power of two")
        shift = steps.bit_length() - 1
    if a.to.kind != "fx" or a.to.width > 62 or a.to.frac != xd.frac + shift:
        raise InferError(f"result type 'to' must be fx<W,{xd.frac + shift}> (W <= 62), got {a.to}")
    return [TensorType(a.to, x.shape[1:])]


# -- kernels -------------------------------------------------------------------------------
def per_unit(v: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A scalar or per-channel (axis 2) array broadcast to one entry per unit of [T, N, C, ...]."""
    v = np.asarray(v, np.int64).reshape(-1)
    if v.size == 1:
        return np.full(shape[1:], v[0], np.int64)
    return np.broadcast_to(v.reshape((1, -1) + (1,) * (len(shape) - 3)), shape[1:]).astype(np.int64)


def lif_run(x, theta, u0, a) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Spikes [T, ...] (int8 0/1) of the integer LIF (module docstring) and per-step masks for counting."""
    u, wait = u0.copy(), np.zeros(u0.shape, np.int64)
    out = np.zeros(x.shape, np.int8)
    active_all, spike_all = np.zeros(x.shape, bool), np.zeros(x.shape, bool)
    for t in range(x.shape[0]):
        active = wait == 0
        v = A.round_shift(np.int64(a.beta) * u, a.beta_frac, a.rounding) + x[t].astype(np.int64)
        v = A.overflow(v, a.mem_bits, a.overflow, np.int64)
        s = active & (v >= theta)
        v = np.where(s, v - theta if a.reset is ResetMode.SOFT else 0, v)
        u = np.where(active, v, u)
        wait = np.where(active, np.where(s, a.refractory, 0), wait - 1)
        out[t], active_all[t], spike_all[t] = s, active, s
    return out, {"active": active_all, "spike": spike_all}


def _encode(k, x):
    return np.ascontiguousarray(np.broadcast_to(x, (k.attrs.timesteps,) + x.shape))


def _lif(k, x, theta, u0):
    a = k.attrs
    out, masks = lif_run(x, per_unit(theta, x.shape), per_unit(u0, x.shape), a)
    if k.tally is not None:
        _count_lif(k, a, masks)
    return out


def _count_lif(k, a: FxLIFAttrs, masks: dict) -> None:
    """Every step: the refractory test. Per active step: the leak (multiply, rounding shift; none when
    beta is 1), the add of x, the membrane's overflow test (2 compares), the threshold compare. Per
    spike with a soft reset: the subtract."""
    def per_sample(mask: np.ndarray) -> np.ndarray:
        return np.swapaxes(mask, 0, 1).reshape(k.tally.samples, -1).sum(axis=1, dtype=np.int64)
    active, spike = per_sample(masks["active"]), per_sample(masks["spike"])
    k.tally.add_total("compare", masks["active"].size)
    k.tally.add("add", active)
    k.tally.add("compare", 3 * active)
    if a.beta != 1 << a.beta_frac:
        k.tally.add("multiply", active)
        if a.beta_frac:
            k.tally.add("shift", active)
            k.tally.add("add", active if a.rounding is Rounding.NEAREST else 0)
    if a.reset is ResetMode.SOFT:
        k.tally.add("add", spike)


def _decode(k, x):
    a = k.attrs
    total = x.astype(np.int64).sum(axis=0)
    if k.tally is not None:   # every step's value is one add to an accumulator that starts at 0
        k.tally.add_total("add", x.size)
        C.overflow(k.tally, total, a.to.width, a.overflow is Overflow.SATURATE)
    return A.overflow(total, a.to.width, a.overflow, a.to.numpy)


define("fx.encode", ("q",), "fx [N,..] repeated over T steps [T,N,..] (a constant input current)",
       _encode_infer, _encode, FxEncodeAttrs, traits=PURE)
define("fx.lif", ("x", "theta", "u0"), "integer LIF/IF neurons over time: leak by a rounding shift of "
       "beta*u, add x, spike at theta, soft or zero reset; spikes fx<2,0>",
       _lif_infer, _lif, FxLIFAttrs, verify=_lif_verify, traits=PURE)
define("fx.decode", ("x",), "exact integer sum over time [T,N,..] -> [N,..], read as the sum or the mean (shift)",
       _decode_infer, _decode, FxDecodeAttrs, traits=PURE)


@dataclass(frozen=True)
class FxSnnPoolAttrs:
    kernel: tuple[int, int]
    strides: tuple[int, int]


def _snn_pool_infer(types, a):
    x = types[0]
    _fx(x, "fx.snn_maxpool's operand")
    if x.rank != 5:
        raise InferError(f"fx.snn_maxpool wants time-major [T, N, C, H, W], got {x}")
    if len(a.kernel) != 2 or len(a.strides) != 2 or any(v < 1 for v in a.kernel + a.strides):
        raise InferError(f"kernel {list(a.kernel)} and strides {list(a.strides)} must be two values >= 1")
    h, w = x.shape[-2:]
    if not isinstance(h, int) or not isinstance(w, int) or h < a.kernel[0] or w < a.kernel[1]:
        raise InferError(f"spatial dims of {x} must be static and >= kernel {list(a.kernel)}")
    oh, ow = (h - a.kernel[0]) // a.strides[0] + 1, (w - a.kernel[1]) // a.strides[1] + 1
    return [x.with_shape(x.shape[:-2] + (oh, ow))]


def _snn_maxpool(k, x):
    from mpc.snn.kernels import maxpool_run  # the integer-count leader rule, shared with snn.maxpool
    a = k.attrs
    oh = (x.shape[-2] - a.kernel[0]) // a.strides[0] + 1
    ow = (x.shape[-1] - a.kernel[1]) // a.strides[1] + 1
    x4 = np.ascontiguousarray(x.reshape((x.shape[0], -1) + x.shape[-2:]))
    out = maxpool_run(x4, a.kernel[0], a.kernel[1], a.strides[0], a.strides[1], oh, ow)
    if k.tally is not None:   # per step: one count add per input unit, one compare per window tap
        k.tally.add_total("add", x.size)
        k.tally.add_total("compare", out.size * a.kernel[0] * a.kernel[1])
    return out.reshape(x.shape[:-2] + (oh, ow))


define("fx.snn_maxpool", ("x",), "spiking max-pool over time: each window passes its leader, the unit with "
       "the highest integer running count of non-zero steps (ties keep the leader)",
       _snn_pool_infer, _snn_maxpool, FxSnnPoolAttrs, traits=PURE)

__all__ = ["SPIKE", "FxDecodeAttrs", "FxEncodeAttrs", "FxLIFAttrs", "FxSnnPoolAttrs", "SumMode", "lif_run",
           "per_unit"]
