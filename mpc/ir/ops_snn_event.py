"""`snn.event_linear`: an event-driven synapse on spike trains, optionally fused with the next LIF layer.

    snn.event_linear(x, w, b?, theta?)   x [T, N, D] spikes (0/1), w [D, H], b [H] -> [T, N, H]
        without theta: the currents x·w + b, computed as the sum of w's rows over the inputs that spiked;
        with theta: the spikes of the LIF layer those currents drive (the snn.lif rule and attributes:
        beta, reset, refractory, v0, dt), in the same loop, so the currents are never stored.
        `density` records the input spike density measured on the calibration data that made the
        lowering choose this op (informational; -1 when none was measured).

The NumPy backend's lowering pass `snn-event` produces it from nn.matmul [+ nn.add] [+ snn.lif] whose
input comes from a spiking layer; nothing else does, and the torch lowering never sees it.
"""
from __future__ import annotations

from dataclasses import dataclass

from mpc.ir.opdefs import InferError, define
from mpc.ir.ops_snn import ResetMode
from mpc.ir.types import FLOATS, TensorType


@dataclass(frozen=True)
class EventLinearAttrs:
    dt: float = 1.0
    beta: float = 1.0
    reset: ResetMode = ResetMode.SOFT
    refractory: int = 0
    v0: float = 0.0
    density: float = -1.0


def _check_vector(t: TensorType | None, what: str, dtype, h: int) -> None:
    if t is not None and (t.dtype != dtype or t.shape not in ((), (1,), (h,))):
        raise InferError(f"{what} must be {dtype}, a scalar or [{h}], got {t}")


def _infer(types, a):
    x, w = types[0], types[1]
    b, theta = (types[2:] + [None, None])[:2]
    if x.dtype not in FLOATS or x.rank != 3:
        raise InferError(f"snn.event_linear wants float spikes [T, N, D], got {x}")
    if w.dtype != x.dtype or w.rank != 2 or w.shape[0] != x.shape[2]:
        raise InferError(f"w must be {x.dtype}[{x.shape[2]}, H], got {w}")
    _check_vector(b, "b", x.dtype, w.shape[1])
    _check_vector(theta, "theta", x.dtype, w.shape[1])
    if not 0 <= a.beta <= 1 or a.refractory < 0 or not a.dt > 0:
        raise InferError(f"wants beta in [0, 1], refractory >= 0, dt > 0; got {a.beta}, {a.refractory}, {a.dt}")
    return [x.with_shape(x.shape[:2] + (w.shape[1],))]


def _kernel(k, x, w, b=None, theta=None):
    from mpc.snn.event import event_linear
    a = k.attrs
    return event_linear(x, w, b, theta, a.beta, a.reset is ResetMode.SOFT, a.refractory, a.v0)


define("snn.event_linear", ("x", "w", "b?", "theta?"),
       "event-driven synapse on spikes (sum of active weight rows) [+ fused LIF]: the numpy lowering snn-event",
       _infer, _kernel, EventLinearAttrs, traits=("stateful",))

__all__ = ["EventLinearAttrs"]
