"""mp-rewrite: every nn.matmul with a weight operand and every nn.conv2d becomes an MP op
(the margin-propagation approximation of the dot product, Nair et al., "Multiplierless MP-Kernel
Machine for Energy-Efficient Edge Devices", IEEE TVLSI 2022): `mp.dot` / `mp.conv2d` with unit gain, zero offset, c = 1 and γ with γD/2 = 1.

The result is uncalibrated (y_MP's scale is far from x·W); `mp-calibrate` chooses γ, c, gains
and offsets on data. Conv biases stay additions (an nn.add after the MP op). A matmul whose second
operand is not a weight cannot become MP and is rejected, naming the op.
"""
from __future__ import annotations

import re

import numpy as np

from mpc.errors import UnsupportedOp
from mpc.ir import apply_patterns
from mpc.passmanager import register_pass


def layer_name(weight: str) -> str:
    """A readable layer prefix from a weight name: `fc0.weight.T` -> `fc0`."""
    return re.sub(r"(\.(T|weight|bnfold|fold|mp))+$", "", weight) or weight


def _unit(rw, name: str, n: int, dtype) -> tuple:
    return (rw.weight(f"{name}.mp_gain", np.ones(n, dtype)), rw.weight(f"{name}.mp_offset", np.zeros(n, dtype)))


def _matmul(op, rw):
    x, w = op.operands
    if not w.is_weight or w.type.rank != 2:
        raise UnsupportedOp(op.kind, op.loc, "the mp target needs a 2-D constant weight as the second "
                                                  "matmul operand (data x data products cannot be MP)")
    name = layer_name(w.name)
    arr = rw.array(w)
    wt = rw.weight(f"{name}.mp_w", np.ascontiguousarray(arr.T))
    gain, offset = _unit(rw, name, arr.shape[1], arr.dtype)
    return rw.op("mp.dot", [x, wt, gain, offset], {"gamma": 2.0 / arr.shape[0]})


def _conv(op, rw):
    x, w = op.operands[:2]
    if not w.is_weight:
        raise UnsupportedOp(op.kind, op.loc, "the mp target needs constant conv weights")
    arr = rw.array(w)
    name = layer_name(w.name)
    gain, offset = _unit(rw, name, arr.shape[0], arr.dtype)
    a = op.attrs
    d = int(np.prod(arr.shape[1:]))
    y = rw.op("mp.conv2d", [x, w, gain, offset], {"gamma": 2.0 / d, "strides": a.strides, "pads": a.pads,
                                                  "dilations": a.dilations, "group": a.group})
    if len(op.operands) == 3:
        b = op.operands[2]
        if not b.is_weight:
            raise UnsupportedOp(op.kind, op.loc, "the mp target needs a constant conv bias")
        bias = rw.weight(f"{b.name}.c11", rw.array(b).reshape(-1, 1, 1))
        y = rw.op("nn.add", [y, bias])
    return y


def _gemm(op, rw):
    raise UnsupportedOp(op.kind, op.loc, "run gemm-to-matmul before mp-rewrite")


@register_pass("mp-rewrite", summary="turn every matmul/gemm/conv with weights into a margin-propagation (MP) op")
def mp_rewrite(graph, ctx) -> dict:
    """Rewrite in place; statistics count the ops rewritten."""
    before = sum(op.kind in ("nn.matmul", "nn.conv2d") for op in graph.ops)
    n = apply_patterns(graph, {"nn.matmul": _matmul, "nn.conv2d": _conv, "nn.gemm": _gemm})
    return {"rewritten": n, "dense_left": before - n}
