"""The `snn` op family: spiking neurons, encoders, decoders and pooling, time-major `[T, N, ...]`.

Time is the leading axis. Synapses stay ordinary ops applied to all T·N rows (nn.matmul, nn.conv2d,
mp.dot, ...), so any synapse can feed a neuron. Spikes are 0/1 values of the float dtype.
`dt` (the length of one step) and the step count T are written in the IR text.

    snn.encode(x)         [N, ...] -> [T, N, ...]
        constant: x at every step (a constant input current);
        poisson:  a spike with probability clip(x, 0, 1) at each step, from a NumPy Generator seeded by `seed`;
        ttfs:     one spike per unit with x > 0, at the step that encodes x in the n-LIF time code
                  (below; the step of layer 0 firing toward the readout of layer 1).
    snn.lif(x, theta)     discrete LIF: u_t = β·u_{t−1} + x_t; s_t = [u_t ≥ θ]; soft reset u_t −= θ·s_t, or
                          reset to zero; u_0 = v0·θ; `refractory` steps without input after a spike (held
                          membrane). β = 1 is the IF neuron. θ is a weight, a scalar or one per channel
                          (axis 2 of [T, N, C, ...]), so fine-tuning can train it.
                          Optional w_rec [C, C] on x [T, N, C] makes the layer block-recurrent: the previous
                          step's spikes of the same layer enter through it, u_t = β·u_{t−1} + x_t + s_{t−1}·w_rec.
    snn.maxpool(x)        spiking max-pool of [T, N, C, H, W]: each window passes, at step t, the spike of
                          its leader, the unit with the highest spike count over steps 0..t; the leader
                          changes only when another unit's count exceeds its own (ties keep the leader;
                          the first leader is the window's first unit). With rate codes the leader is the
                          unit firing most often so far; with one spike per unit (time to first spike) it
                          passes exactly the earliest spike, the max of the encoded values.
    snn.nlif(x, bias?)    non-leaky n-LIF with exponential synaptic kernel (time constant τ): an input spike
                          of weight w at time t_j adds K·w·(1 − e^{−(t − t_j)/τ}) to the membrane. Read out at
                          step e = layer·W/dt (W the window), V = that sum + bias; the unit fires once, at the
                          step e' + round(τ·ln(1 − min(V, 1)/K)/dt) with e' = (layer + 1)·W/dt, if V > 0: read
                          out at e', its kernel value is then exactly V (up to the rounding of its step).
                          K = 1/(1 − e^{−W/τ}), so values in [0, 1] map to spike times inside one window.
    snn.decode(x)         [T, N, ...] -> [N, ...]: count (spikes over T), rate (count / T), membrane
                          (u_T / T of a non-firing integrator u_t = β·u_{t−1} + x_t: with β = 1 the mean input
                          current, the source layer's value at the rate scale), first_spike (time dt·t of the
                          first spike, dt·T if none), ttfs (the n-LIF kernel value at step `readout`,
                          K·(1 − e^{−(readout − t)·dt/τ}) for a spike at step t <= readout, else 0).
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from mpc.ir.opdefs import InferError, define
from mpc.ir.types import FLOATS, TensorType


class EncodeMode(enum.Enum):
    """How snn.encode turns values into currents or spikes."""

    CONSTANT = "constant"
    POISSON = "poisson"
    TTFS = "ttfs"


class ResetMode(enum.Enum):
    """What a LIF membrane does after a spike."""

    SOFT = "soft"
    ZERO = "zero"


class DecodeMode(enum.Enum):
    """What snn.decode reads from a time-major value."""

    COUNT = "count"
    RATE = "rate"
    MEMBRANE = "membrane"
    FIRST_SPIKE = "first_spike"
    TTFS = "ttfs"


@dataclass(frozen=True)
class EncodeAttrs:
    timesteps: int
    dt: float
    mode: EncodeMode = EncodeMode.CONSTANT
    seed: int = 0
    tau: float = 1.0
    window: float = 8.0


@dataclass(frozen=True)
class LIFAttrs:
    dt: float
    beta: float = 1.0
    reset: ResetMode = ResetMode.SOFT
    refractory: int = 0
    v0: float = 0.0


@dataclass(frozen=True)
class SpikePoolAttrs:
    kernel: tuple[int, int]
    strides: tuple[int, int]


@dataclass(frozen=True)
class NLIFAttrs:
    dt: float
    tau: float
    window: float
    layer: int


@dataclass(frozen=True)
class DecodeAttrs:
    mode: DecodeMode
    beta: float = 1.0
    dt: float = 1.0
    tau: float = 1.0
    window: float = 8.0
    readout: int = 0


def window_steps(dt: float, window: float) -> int:
    """Steps per n-LIF window."""
    return round(window / dt)


def _positive(name: str, v: float) -> None:
    if not (v > 0 and math.isfinite(v)):
        raise InferError(f"{name} must be finite and > 0, got {v}")


def _spiking_input(t: TensorType, what: str, rank: int = 3) -> None:
    if t.dtype not in FLOATS:
        raise InferError(f"{what} wants a float operand, got {t.dtype}")
    if t.rank < rank:
        raise InferError(f"{what} wants a time-major operand [T, N, ...] of rank >= {rank}, got {t}")


# -- snn.encode ------------------------------------------------------------------------------
def _encode_infer(types, a):
    x = types[0]
    if x.dtype not in FLOATS or x.rank < 1:
        raise InferError(f"snn.encode wants a float operand [N, ...], got {x}")
    if a.timesteps < 1:
        raise InferError(f"timesteps must be >= 1, got {a.timesteps}")
    for name in ("dt", "tau", "window"):
        _positive(name, getattr(a, name))
    if a.mode is EncodeMode.TTFS and window_steps(a.dt, a.window) > a.timesteps:
        raise InferError(f"ttfs: the window of {window_steps(a.dt, a.window)} steps exceeds {a.timesteps} steps")
    return [x.with_shape((a.timesteps,) + x.shape)]


def _encode(k, x):
    from mpc.snn.kernels import snn_encode
    a = k.attrs
    return snn_encode(x, a.mode.value, a.timesteps, a.seed, a.dt, a.tau, a.window)


# -- snn.lif ---------------------------------------------------------------------------------
def _theta_infer(x: TensorType, theta: TensorType) -> None:
    if theta.dtype != x.dtype:
        raise InferError(f"theta must be {x.dtype}, got {theta}")
    if theta.shape not in ((), (1,), (x.shape[2],)):
        raise InferError(f"theta must be a scalar or one per channel [{x.shape[2]}], got {theta}")


def _lif_infer(types, a):
    x, theta = types[:2]
    _spiking_input(x, "snn.lif")
    _theta_infer(x, theta)
    if len(types) == 3:
        _recurrent_infer(x, types[2])
    _positive("dt", a.dt)
    if not 0 <= a.beta <= 1:
        raise InferError(f"beta must be in [0, 1], got {a.beta}")
    if a.refractory < 0:
        raise InferError(f"refractory must be >= 0, got {a.refractory}")
    return [x]



def _recurrent_infer(x: TensorType, w: TensorType) -> None:
    """The recurrent weight of a block-recurrent layer: [C, C] on x [T, N, C]."""
    if x.rank != 3:
        raise InferError(f"a recurrent snn.lif wants x [T, N, C], got {x}")
    if w.dtype != x.dtype or w.shape != (x.shape[2], x.shape[2]):
        raise InferError(f"w_rec must be {x.dtype}[{x.shape[2]},{x.shape[2]}], got {w}")


def _lif(k, x, theta, w_rec=None):
    from mpc.snn.kernels import snn_lif, snn_lif_rec
    a = k.attrs
    if w_rec is not None:
        return snn_lif_rec(x, theta, w_rec, a.beta, a.reset is ResetMode.SOFT, a.refractory, a.v0)
    return snn_lif(x, theta, a.beta, a.reset is ResetMode.SOFT, a.refractory, a.v0)


# -- snn.maxpool -----------------------------------------------------------------------------
def _pool_infer(types, a):
    x = types[0]
    _spiking_input(x, "snn.maxpool", 5)
    if any(v < 1 for v in a.kernel + a.strides):
        raise InferError(f"kernel {list(a.kernel)} and strides {list(a.strides)} must be >= 1")
    h, w = x.shape[-2:]
    if not isinstance(h, int) or not isinstance(w, int) or h < a.kernel[0] or w < a.kernel[1]:
        raise InferError(f"spatial dims of {x} must be static and >= kernel {list(a.kernel)}")
    oh, ow = (h - a.kernel[0]) // a.strides[0] + 1, (w - a.kernel[1]) // a.strides[1] + 1
    return [x.with_shape(x.shape[:-2] + (oh, ow))]


def _maxpool(k, x):
    from mpc.snn.kernels import snn_maxpool
    return snn_maxpool(x, k.attrs.kernel, k.attrs.strides)


# -- snn.nlif --------------------------------------------------------------------------------
def _nlif_infer(types, a):
    x = types[0]
    _spiking_input(x, "snn.nlif")
    for name in ("dt", "tau", "window"):
        _positive(name, getattr(a, name))
    if a.layer < 1:
        raise InferError(f"layer must be >= 1, got {a.layer}")
    if len(types) == 2 and (types[1].shape != (x.shape[2],) or types[1].dtype != x.dtype):
        raise InferError(f"bias must be {x.dtype}[{x.shape[2]}], got {types[1]}")
    if isinstance(x.shape[0], int) and (a.layer + 1) * window_steps(a.dt, a.window) > x.shape[0] - 1:
        raise InferError(f"layer {a.layer} fires after the last of {x.shape[0]} steps")
    return [x]


def _nlif(k, x, bias=None):
    from mpc.snn.kernels import snn_nlif
    a = k.attrs
    return snn_nlif(x, bias, a.dt, a.tau, a.window, a.layer)


# -- snn.decode ------------------------------------------------------------------------------
def _decode_infer(types, a):
    x = types[0]
    _spiking_input(x, "snn.decode", 2)
    if a.mode is DecodeMode.TTFS and isinstance(x.shape[0], int) and not 0 <= a.readout < x.shape[0]:
        raise InferError(f"readout step {a.readout} outside the {x.shape[0]} steps")
    return [x.with_shape(x.shape[1:])]


def _decode(k, x):
    from mpc.snn.kernels import snn_decode
    a = k.attrs
    return snn_decode(x, a.mode.value, a.beta, a.dt, a.tau, a.window, a.readout)


STATEFUL = ("stateful",)
define("snn.encode", ("x",), "values [N,..] as T steps of current or spikes [T,N,..] (constant, poisson, ttfs)",
       _encode_infer, _encode, EncodeAttrs, traits=STATEFUL)
define("snn.lif", ("x", "theta", "w_rec?"),
       "LIF/IF neurons over time: u = beta*u + x (+ s_prev @ w_rec), spike at theta, soft or zero reset",
       _lif_infer, _lif, LIFAttrs, traits=STATEFUL)
define("snn.maxpool", ("x",), "spiking max-pool: each window passes its leader, the unit with the highest running count",
       _pool_infer, _maxpool, SpikePoolAttrs, traits=STATEFUL)
define("snn.nlif", ("x", "bias?"), "non-leaky n-LIF neurons, exponential synaptic kernel, time-to-first-spike",
       _nlif_infer, _nlif, NLIFAttrs, traits=STATEFUL)
# decode reads the whole time axis at once (no state carried, no RNG): pure, but not folded
define("snn.decode", ("x",), "time-major [T,N,..] to [N,..]: count, rate, membrane, first_spike, ttfs",
       _decode_infer, _decode, DecodeAttrs, traits=("pure",))

__all__ = ["DecodeAttrs", "DecodeMode", "EncodeAttrs", "EncodeMode", "LIFAttrs", "NLIFAttrs", "ResetMode",
           "SpikePoolAttrs", "window_steps"]
