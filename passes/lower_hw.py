"""`lower-hw`: fixed-point dense layers become scheduled hardware datapaths (the Verilog backend's lowering).

fx.mp_dot becomes hw.mp_dense, fx.mp_conv2d hw.mp_conv2d (output channels are its neurons) and fx.matmul becomes hw.mac_dense, each with its schedule as
attributes: `parallel` (neurons computed at once, the `--parallel P` flag), for MP the number of
bisection halvings (the bit length of the stored gamma, as the emulator uses) and the datapath width.

Widths, for MP: x and w are aligned to a common fraction (span bits each, sign included), so every
a = |x ± w| is below 2^span, every bisection midpoint lies in [max a - gamma, max a] and each of the D
terms [a - mid]+ + [-a - mid]+ is below 2^(span+1) + 2·gamma; their sum fits in
bitlen(D) + max(span, bitlen(gamma)) + 3 signed bits. For a MAC layer the accumulator is the
bound of the sum of D products (see mpc.ir.ops_fx.sum_bits), at least the result's width.

`parallel` must divide every layer's neuron count (groups of P neurons, no idle PEs); otherwise the
pass raises BadParallel (a BadFlag) naming the layer, its size and the divisors that would work.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from mpc.passes.lower_hw_snn import lower_snn

from mpc.errors import BadFlag
from mpc.ir import Graph
from mpc.ir.ops_fx import sum_bits
from mpc.ir.ops_hw import HwMACAttrs, HwMPAttrs, HwMPConvAttrs
from mpc.passmanager import register_pass

KINDS = {"fx.mp_dot": "hw.mp_dense", "fx.mp_conv2d": "hw.mp_conv2d", "fx.matmul": "hw.mac_dense"}


class BadParallel(BadFlag):
    """--parallel P that some layer's neuron count does not allow, located at that layer."""

    def __init__(self, loc, message: str):
        self.loc = loc
        super().__init__(f"{loc}: {message}" if loc.known else message)


@dataclass(frozen=True)
class LowerHwOptions:
    parallel: int = 1


def mp_width(op) -> int:
    """Bits of the MP datapath of an fx.mp_dot / hw.mp_dense op (see the module docstring)."""
    xd, wd = op.operands[0].type.dtype, op.operands[1].type.dtype
    fx_ = xd.frac - op.attrs.c_shift
    common = max(fx_, wd.frac)
    span = max(xd.width + common - fx_, wd.width + common - wd.frac)
    depth = math.prod(op.operands[1].type.shape[1:])
    return depth.bit_length() + max(span, int(op.attrs.gamma).bit_length()) + 3


def mac_width(op) -> int:
    """Bits of the accumulator of an fx.matmul / hw.mac_dense op."""
    xd, wd = op.operands[0].type.dtype, op.operands[1].type.dtype
    return max(sum_bits(xd, wd, op.operands[1].type.shape[0]), op.results[0].type.dtype.width)


def _neurons(op) -> int:
    return op.operands[1].type.shape[1 if op.kind == "fx.matmul" else 0]


def _check_parallel(op, p: int) -> None:
    h = _neurons(op)
    if p < 1 or h % p:
        ok = ", ".join(str(d) for d in range(1, h + 1) if h % d == 0)
        raise BadParallel(op.loc, f"--parallel {p}: {op.kind} %{op.results[0].name} has {h} output neurons, "
                          f"which {p} does not divide (P must divide every layer's neuron count; here: {ok})")


@register_pass("lower-hw", summary="fx dense layers to scheduled hw datapaths (MP multiplierless, MAC)",
               options=LowerHwOptions)
def lower_hw(graph: Graph, ctx, opts: LowerHwOptions = LowerHwOptions()) -> dict:
    """Rewrite fx.mp_dot / fx.matmul in place into hw.mp_dense / hw.mac_dense; returns their counts."""
    stats = {"mp_dense": 0, "mp_conv2d": 0, "mac_dense": 0}
    layers = [op for op in graph.ops if op.kind in KINDS]
    for op in layers:   # every layer checked before any is rewritten: one error, nothing half done
        _check_parallel(op, opts.parallel)
    stats.update(lower_snn(graph, opts.parallel))   # spiking layers first: their synapses are not MAC layers
    layers = [op for op in graph.ops if op.kind in KINDS]
    for op in layers:
        a = op.attrs
        if op.kind == "fx.mp_dot":
            op.attrs = HwMPAttrs(a.gamma, a.to, a.c_shift, a.overflow, opts.parallel, int(a.gamma).bit_length(),
                                 mp_width(op))
        elif op.kind == "fx.mp_conv2d":
            op.attrs = HwMPConvAttrs(a.gamma, a.to, a.c_shift, a.overflow, a.strides, a.pads, a.dilations, a.group,
                                     opts.parallel, int(a.gamma).bit_length(), mp_width(op))
        else:
            op.attrs = HwMACAttrs(a.to, a.overflow, opts.parallel, mac_width(op))
        op.kind = KINDS[op.kind]
        stats[op.kind[3:]] += 1
    return stats
