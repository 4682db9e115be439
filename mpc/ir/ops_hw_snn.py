"""Spiking layers of the `hw` family: integer LIF neurons and spike-gated synapses as scheduled datapaths.

Values are time-major, as in the fx spiking ops: [T, N, ...]. The hardware takes a whole sample (all T
steps) per stream beat and runs the time loop as a state machine inside the layer. The kernels are the
fx ops' kernels, so lowering leaves the bit-accurate emulator unchanged.

    hw.lif(x, theta, u0)    fx.lif (same attributes, same integer semantics) plus `parallel`: P neurons
        updated per cycle; the membrane and refractory counters of all units live in rotating shift
        registers; one cycle per (step, group of P units), so T·U/P cycles (U units per step).
    hw.spike_dense(s, w)    fx.matmul of spikes (stored 0 or 1, produced by fx.lif or hw.lif) with a
        weight matrix: no multiplier. `parallel` PEs, one input j per cycle; each PE holds one
        accumulator per time step and adds w[j] where input j spiked at that step. Inputs whose weights
        are zero for every PE of a group are skipped. `width`: accumulator bits.

Both require `parallel` to divide their neuron count (groups are full).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from mpc.fx.arith import Overflow
from mpc.ir.opdefs import InferError, define, lookup
from mpc.ir.ops_fx import AccumAttrs, _matmul_infer
from mpc.ir.ops_fx_snn import SPIKE, FxLIFAttrs
from mpc.ir.ops_hw import MAX_WIDTH
from mpc.ir.types import DType

SPIKE_PRODUCERS = ("fx.lif", "hw.lif")


@dataclass(frozen=True)
class HwLIFAttrs(FxLIFAttrs):
    """fx.lif's attributes (the same integer semantics) plus the neurons updated per cycle."""
    parallel: int = 1


@dataclass(frozen=True)
class HwSpikeDenseAttrs:
    to: DType
    overflow: Overflow = Overflow.SATURATE
    parallel: int = 1
    width: int = 32


def fx_lif_attrs(a: HwLIFAttrs) -> FxLIFAttrs:
    """The fx.lif attributes of an hw.lif (its schedule dropped)."""
    return FxLIFAttrs(a.mem_bits, a.beta, a.beta_frac, a.reset, a.refractory, a.rounding, a.overflow)


def _parallel(p: int, neurons: int) -> None:
    if p < 1 or neurons % p:
        raise InferError(f"parallel = {p} must divide the {neurons} neurons")


def _lif_infer(types, a):
    out = lookup("fx.lif").infer(types, fx_lif_attrs(a))
    _parallel(a.parallel, math.prod(types[0].shape[2:]))
    return out


def _lif_verify(op, graph) -> None:
    lookup("fx.lif").verify(op, graph)


def _lif_kernel(k, x, theta, u0):
    return lookup("fx.lif").kernel(k, x, theta, u0)


def _dense_infer(types, a):
    s, w = types
    if s.rank != 3 or s.dtype != SPIKE:
        raise InferError(f"hw.spike_dense wants time-major spikes {SPIKE}[T, N, D], got {s}")
    out = _matmul_infer(types, AccumAttrs(a.to, a.overflow))
    _parallel(a.parallel, w.shape[1])
    if not 2 <= a.width <= MAX_WIDTH:
        raise InferError(f"width = {a.width} must be in [2, {MAX_WIDTH}]")
    return out


def _dense_verify(op, graph) -> None:
    """The gate reads one bit per spike: the operand must be a spiking layer's output (0 or 1)."""
    src = op.operands[0].producer
    if src is None or src.kind not in SPIKE_PRODUCERS:
        raise InferError(f"hw.spike_dense's spikes must come from {' or '.join(SPIKE_PRODUCERS)}")


def _dense_kernel(k, s, w):
    return lookup("hw.mac_dense").kernel(k, s, w)


define("hw.lif", ("x", "theta", "u0"), "integer LIF layer as a datapath: per cycle P neurons of one step "
       "leak, accumulate, compare with theta, subtract or zero reset",
       _lif_infer, _lif_kernel, HwLIFAttrs, verify=_lif_verify, traits=("pure",))
define("hw.spike_dense", ("s", "w"), "spike-gated accumulate (no multiplier): add w[j] at each step where "
       "input j spiked; P PEs, one input per cycle", _dense_infer, _dense_kernel, HwSpikeDenseAttrs,
       verify=_dense_verify, traits=("pure",))

__all__ = ["SPIKE_PRODUCERS", "HwLIFAttrs", "HwSpikeDenseAttrs", "fx_lif_attrs"]
