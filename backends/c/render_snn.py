"""C renderers of the fixed-point spiking ops (fx.encode, fx.lif, fx.decode), one sample at a time.

A time-major value [T, N, ...] is stored per sample as [T, ...] (step-major), so step t of unit m
is `buf[t * M + m]` with M the units per step. fx.lif writes the integer LIF of its op docstring
(mpc.ir.ops_fx_snn): with beta = 2^beta_frac (no leak) the leak line is omitted, so an IF layer
has no multiply.
"""
from __future__ import annotations

import math

from mpc.backends.c.render import Names, _head, _nearest, ctype_of, renders

from mpc.ir import Op
from mpc.ir.ops_snn import ResetMode


def _steps(n: Names, op: Op, i: int = 0) -> tuple[int, int]:
    """(T, units per step) of the time-major operand i."""
    shape = n.shape[id(op.operands[i])]
    return shape[0], math.prod(shape[1:])


@renders("fx.encode")
def _encode(op: Op, n: Names) -> list[str]:
    steps, m = op.attrs.timesteps, math.prod(n.shape[id(op.operands[0])])
    x, y = n.of(op.operands[0]), n.of(op.results[0])
    return [_head(op), f"    for (i = 0; i < {steps}; i++)", f"        for (j = 0; j < {m}; j++)",
            f"            {y}[i * {m} + j] = {x}[j];"]


def _per_unit(n: Names, op: Op, i: int) -> str:
    """The C index of operand i (theta or u0: one value, or one per channel) for unit j of a step."""
    size = math.prod(n.shape[id(op.operands[i])])
    if size == 1:
        return f"{n.of(op.operands[i])}[0]"
    inner = math.prod(n.shape[id(op.operands[0])][2:])   # units per channel within a step
    return f"{n.of(op.operands[i])}[(j / {inner}) % {size}]" if inner != 1 else f"{n.of(op.operands[i])}[j % {size}]"


@renders("fx.lif")
def _lif(op: Op, n: Names) -> list[str]:
    a = op.attrs
    steps, m = _steps(n, op)
    x, y = n.of(op.operands[0]), n.of(op.results[0])
    sat = int(a.overflow.value == "saturate")
    leak = "u" if a.beta == 1 << a.beta_frac else \
        f"mpc_round_shift(INT64_C({a.beta}) * u, {a.beta_frac}, {_nearest(op)})"
    reset = "v - th" if a.reset is ResetMode.SOFT else "0"
    return [_head(op), "    {", "        int wait;", "        int64_t u, v, th;",
            f"        for (j = 0; j < {m}; j++) {{",
            f"            u = {_per_unit(n, op, 2)};", f"            th = {_per_unit(n, op, 1)};", "            wait = 0;",
            f"            for (i = 0; i < {steps}; i++) {{",
            "                if (wait > 0) {", "                    wait--;",
            f"                    {y}[i * {m} + j] = 0;", "                    continue;", "                }",
            f"                v = mpc_overflow({leak} + {x}[i * {m} + j], {a.mem_bits}, {sat});",
            "                if (v >= th) {", f"                    {y}[i * {m} + j] = 1;",
            f"                    v = {reset};", f"                    wait = {a.refractory};", "                } else {",
            f"                    {y}[i * {m} + j] = 0;", "                }", "                u = v;",
            "            }", "        }", "    }"]


@renders("fx.decode")
def _decode(op: Op, n: Names) -> list[str]:
    steps, m = _steps(n, op)
    x, y = n.of(op.operands[0]), n.of(op.results[0])
    to = op.attrs.to
    sat = int(op.attrs.overflow.value == "saturate")
    return [_head(op), f"    for (j = 0; j < {m}; j++) {{", "        int64_t acc = 0;",
            f"        for (i = 0; i < {steps}; i++)", f"            acc += {x}[i * {m} + j];",
            f"        {y}[j] = ({ctype_of(to.width)})mpc_overflow(acc, {to.width}, {sat});", "    }"]
