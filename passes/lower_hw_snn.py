"""`lower-hw-snn`: fixed-point spiking layers become scheduled hardware datapaths (Verilog backend lowering).

fx.lif becomes hw.lif and an fx.matmul whose operand is a spiking layer's output becomes
hw.spike_dense (a spike-gated accumulate: spikes are 0 or 1, so the synapse adds a weight where its
input spiked and needs no multiplier). `parallel` (the `--parallel P` flag) is written on each: P
neurons per cycle. `lower-hw` runs it first (after checking --parallel on every layer), then takes the
remaining (non-spiking) fx.matmul; registered alone as `lower-hw-snn` for snippet tests and dumps.

The accumulator of hw.spike_dense is as wide as the exact sum bound of the fx.matmul it replaces (at
least the result's width), so the sum equals the emulator's int64 one before overflow.
`parallel` must divide every spiking layer's neuron count; otherwise BadSpikingParallel (a BadFlag) names the layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from mpc.errors import BadFlag
from mpc.ir import Graph
from mpc.ir.ops_fx import sum_bits
from mpc.ir.ops_hw_snn import HwLIFAttrs, HwSpikeDenseAttrs
from mpc.passmanager import register_pass


@dataclass(frozen=True)
class LowerHwSnnOptions:
    parallel: int = 1


class BadSpikingParallel(BadFlag):
    """--parallel P that some spiking layer's neuron count does not allow, located at that layer."""

    def __init__(self, loc, message: str):
        self.loc = loc
        super().__init__(f"{loc}: {message}" if loc.known else message)


def spike_width(op) -> int:
    """Bits of the accumulator of a spike-fed fx.matmul: the exact sum bound, at least the result's width."""
    xd, wd = op.operands[0].type.dtype, op.operands[1].type.dtype
    return max(sum_bits(xd, wd, op.operands[1].type.shape[0]), op.results[0].type.dtype.width)


def _neurons(op) -> int:
    if op.kind == "fx.lif":
        return math.prod(op.operands[0].type.shape[2:])
    return op.operands[1].type.shape[1]


def _check(op, p: int) -> None:
    h = _neurons(op)
    if p < 1 or h % p:
        ok = ", ".join(str(d) for d in range(1, h + 1) if h % d == 0)
        raise BadSpikingParallel(op.loc, f"--parallel {p}: {op.kind} %{op.results[0].name} has {h} neurons per step, "
                          f"which {p} does not divide (P must divide every layer's neuron count; here: {ok})")


def _is_spike_synapse(op) -> bool:
    src = op.operands[0].producer
    return op.kind == "fx.matmul" and src is not None and src.kind == "fx.lif"


def lower_snn(graph: Graph, parallel: int) -> dict:
    """Rewrite fx.lif and spike-fed fx.matmul in place into hw.lif / hw.spike_dense; their counts (non-zero)."""
    synapses = [op for op in graph.ops if _is_spike_synapse(op)]
    neurons = [op for op in graph.ops if op.kind == "fx.lif"]
    for op in neurons + synapses:   # every layer checked before any is rewritten: one error, nothing half done
        _check(op, parallel)
    for op in synapses:
        a = op.attrs
        op.attrs = HwSpikeDenseAttrs(a.to, a.overflow, parallel, spike_width(op))
        op.kind = "hw.spike_dense"
    for op in neurons:
        a = op.attrs
        op.attrs = HwLIFAttrs(a.mem_bits, a.beta, a.beta_frac, a.reset, a.refractory, a.rounding, a.overflow, parallel)
        op.kind = "hw.lif"
    return {k: v for k, v in (("lif", len(neurons)), ("spike_dense", len(synapses))) if v}


@register_pass("lower-hw-snn", summary="fx spiking layers to hw datapaths (LIF neurons, spike-gated synapses)",
               options=LowerHwSnnOptions)
def lower_hw_snn(graph: Graph, ctx, opts: LowerHwSnnOptions = LowerHwSnnOptions()) -> dict:
    """The spiking part of lower-hw alone (lower-hw runs it first, so the verilog lowering needs no extra pass)."""
    return lower_snn(graph, opts.parallel)
