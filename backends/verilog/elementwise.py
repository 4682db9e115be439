"""Verilog for the element-wise fixed-point ops between layers: fx.add with a constant (bias), fx.relu, fx.cast.

They are combinational stages (one always block over the elements): out_data is a function of in_data, valid passes forward and ready
backward unchanged. Rounding and overflow follow the emulator (mpc.fx.arith): a right shift by s
with rounding `nearest` adds 2^(s-1) first (ties toward +infinity), `floor` is the arithmetic shift;
`saturate` clamps to the result's range, `wrap` keeps its low bits. A bias is shifted to the result's
fraction at conversion, with the same rounding, so the hardware adds a constant.
"""
from __future__ import annotations

import numpy as np
from mpc.backends.verilog.layers import ports
from mpc.backends.verilog.text import lit, pack, saturate, sext

from mpc.errors import UnsupportedOp
from mpc.fx import arith as A
from mpc.fx.arith import Overflow, Rounding

PASS = ["    assign out_valid = in_valid;", "    assign in_ready = out_ready;"]


def _shift(expr: str, s: int, rounding: Rounding, bits: int) -> str:
    """`expr` (signed, `bits` wide) times 2^-s: exact left shift, or a right shift with rounding."""
    if s <= 0:
        return f"({expr} <<< {-s})"
    if rounding is Rounding.NEAREST:
        return f"(({expr} + {bits}'sd{1 << (s - 1)}) >>> {s})"
    return f"({expr} >>> {s})"


def _stage(name: str, op, x, body: str, iw: int, decls: tuple[str, ...] = ()) -> str:
    """A combinational module over the elements of x: `body` computes v (iw bits, signed) from element xi."""
    n = int(np.prod(x.type.shape[1:]))
    wi, wo = x.type.dtype.width, op.results[0].type.dtype.width
    wrap = getattr(op.attrs, "overflow", Overflow.SATURATE) is Overflow.WRAP
    lines = ports(name, n, wi, n, wo, [f"{name}: {op.kind} on {n} elements (combinational)"], False) + list(decls) + PASS
    # One process writes the whole bus (then one assign): an event-driven simulator sees one change per
    # input change, not one per element (per-element assigns make chained stages re-evaluate n^k times).
    lines += [f"    reg [{n * wo - 1}:0] y;", f"    reg signed [{iw - 1}:0] xi, v;", f"    reg [{wo - 1}:0] yo;",
              "    integer i;", "    always @* begin", f"        y = {n * wo}'d0;",
              f"        for (i = 0; i < {n}; i = i + 1) begin",
              f"            xi = $signed({sext('in_data', f'i * {wi}', wi, iw)});", f"            v = {body};",
              *("            " + s for s in saturate("yo", "v", iw, wo, wrap)), f"            y[i * {wo} +: {wo}] = yo;",
              "        end", "    end", "    assign out_data = y;", "endmodule", ""]
    return "\n".join(lines)


def _bias(op, graph) -> tuple[int, np.ndarray]:
    """(index of the activation operand, the constant shifted to the result's fraction)."""
    weights = [i for i, v in enumerate(op.operands) if v.is_weight]
    if len(weights) != 1:
        raise UnsupportedOp(op.kind, op.loc, "the verilog backend adds a constant (bias) to one activation only")
    wi = weights[0]
    b = graph.weights[op.operands[wi].name]
    return 1 - wi, A.shift_to(b, op.operands[wi].type.dtype.frac, op.attrs.to.frac, op.attrs.rounding)


def render_add(op, graph, name: str) -> str:
    """fx.add(x, @bias): x shifted to the result's fraction plus the pre-shifted bias, then overflow."""
    xi, bias = _bias(op, graph)
    x = op.operands[xi]
    n = int(np.prod(x.type.shape[1:]))
    bias = np.broadcast_to(bias, x.type.shape[1:]).reshape(-1)
    s = x.type.dtype.frac - op.attrs.to.frac
    bb = max(int(np.abs(bias).max(initial=0)).bit_length() + 1, 2)
    iw = max(x.type.dtype.width + max(0, -s), bb, op.attrs.to.width) + 2
    body = f"{_shift('xi', s, op.attrs.rounding, iw)} + $signed({sext('BIAS', f'i * {bb}', bb, iw)})"
    return _stage(name, op, x, body, iw, (f"    localparam [{n * bb - 1}:0] BIAS = {lit(pack(bias, bb), n * bb)};",))


def render_relu(op, graph, name: str) -> str:
    """fx.relu: max(q, 0)."""
    w = op.operands[0].type.dtype.width
    return _stage(name, op, op.operands[0], f"xi[{w}] ? {w + 1}'sd0 : xi", w + 1)


def render_cast(op, graph, name: str) -> str:
    """fx.cast: shift to the result's fraction with rounding, then overflow."""
    xd, to = op.operands[0].type.dtype, op.attrs.to
    s = xd.frac - to.frac
    iw = max(xd.width + max(0, -s), to.width) + 2
    body = _shift('xi', s, op.attrs.rounding, iw)
    return _stage(name, op, op.operands[0], body, iw)
