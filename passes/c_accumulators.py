"""`c-accumulators`: choose the width of the running sum of each fixed-point matmul and convolution.

A product of an fx<Wx,Fx> value and an fx<Ww,Fw> weight needs Wx + Ww bits; a sum of K of them needs
at most bit_length(K - 1) more. Where that bound is at most 31 bits, the op gets `acc_bits = 32`
(a 32-bit accumulator is exact and cheaper on 32-bit microcontrollers); elsewhere it keeps 64. The
emulator's result does not depend on it (sums are exact in both widths); the C backend's renderer
reads it. Part of the C backend's lowering.
"""
from __future__ import annotations

import dataclasses
import math

from mpc.ir import Graph
from mpc.ir.ops_fx import sum_bits
from mpc.passmanager import register_pass


def _depth(op) -> int:
    w = op.operands[1].type.shape
    return w[0] if op.kind == "fx.matmul" else math.prod(w[1:])


@register_pass("c-accumulators", summary="32-bit accumulators for fx matmul/conv2d whose sums fit in 31 bits")
def c_accumulators(graph: Graph, ctx) -> dict:
    """Set `acc_bits` on fx.matmul and fx.conv2d from the bound on their sums; returns {'acc32', 'acc64'}."""
    stats = {"acc32": 0, "acc64": 0}
    for op in graph.ops:
        if op.kind not in ("fx.matmul", "fx.conv2d"):
            continue
        bits = 32 if sum_bits(op.operands[0].type.dtype, op.operands[1].type.dtype, _depth(op)) <= 31 else 64
        op.attrs = dataclasses.replace(op.attrs, acc_bits=bits)
        stats[f"acc{bits}"] += 1
    return stats
