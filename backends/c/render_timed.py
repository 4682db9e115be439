"""C renderers for fixed-point conv and pooling on time-major operands, and the spiking max-pool.

A time-major value [T, N, ...] is stored per sample as [T, ...] (step-major). fx.conv2d,
fx.avgpool2d and fx.maxpool2d apply per time step: the one-step block inside a loop over the T
steps, on pointers to step t of the operand and of the result (as fx.matmul does over rows).
fx.snn_maxpool keeps an integer running count of non-zero steps per input unit and one leader per
window (the op's docstring in mpc.ir.ops_fx_snn): a unit takes the lead only with a strictly higher
count, scanned in row-major order, so ties keep the leader.
"""
from __future__ import annotations

import math

from mpc.backends.c.render import RENDER, Names, ctype, renders

from mpc.ir import Op

STEPWISE = ("fx.conv2d", "fx.avgpool2d", "fx.maxpool2d")
_ONE_STEP = {kind: RENDER[kind] for kind in STEPWISE}   # the per-sample renderers, [C, H, W]


def _per_step(op: Op, n: Names) -> list[str]:
    """The op's one-step block; inside a loop over T when its operand is time-major [T, C, H, W]."""
    x, y = op.operands[0], op.results[0]
    one = _ONE_STEP[op.kind]
    if len(n.shape[id(x)]) != 4:
        return one(op, n)
    steps, dx, dy = n.shape[id(x)][0], math.prod(n.shape[id(x)][1:]), math.prod(n.shape[id(y)][1:])
    inner = one(op, Names({**n.expr, id(x): "xt", id(y): "yt"}, n.ctype,
                          {**n.shape, id(x): n.shape[id(x)][1:], id(y): n.shape[id(y)][1:]}))
    xt, yt = ctype(x.type.dtype), ctype(y.type.dtype)
    return [inner[0], "    {", "        int t;", f"        for (t = 0; t < {steps}; t++) {{",
            f"            const {xt} *xt = {n.of(x)} + t * {dx};", f"            {yt} *yt = {n.of(y)} + t * {dy};",
            *("        " + line for line in inner[1:]), "        }", "    }"]


for _kind in STEPWISE:
    RENDER[_kind] = _per_step


@renders("fx.snn_maxpool")
def _snn_maxpool(op: Op, n: Names) -> list[str]:
    a = op.attrs
    steps, c, hh, ww = n.shape[id(op.operands[0])]
    _, _, oh, ow = n.shape[id(op.results[0])]
    x, y = n.of(op.operands[0]), n.of(op.results[0])
    units, outs = c * hh * ww, c * oh * ow
    cell = f"ch * {hh * ww} + (oy * {a.strides[0]} + ky) * {ww} + ox * {a.strides[1]} + kx"
    return ["    /* " + f"{op.kind} -> %{op.results[0].name} ({op.loc}) */", "    {",
            f"        static int32_t count[{units}];", f"        static int32_t lead[{outs}];", "        int t;",
            f"        for (j = 0; j < {units}; j++)", "            count[j] = 0;",
            f"        for (ch = 0; ch < {c}; ch++)", f"            for (oy = 0; oy < {oh}; oy++)",
            f"                for (ox = 0; ox < {ow}; ox++)",
            (f"                    lead[(ch * {oh} + oy) * {ow} + ox] = ch * {hh * ww} + oy * {a.strides[0] * ww}"
             f" + ox * {a.strides[1]};"),
            f"        for (t = 0; t < {steps}; t++) {{", f"            for (j = 0; j < {units}; j++)",
            f"                count[j] += {x}[t * {units} + j] != 0;",
            f"            for (ch = 0; ch < {c}; ch++)", f"                for (oy = 0; oy < {oh}; oy++)",
            f"                    for (ox = 0; ox < {ow}; ox++) {{",
            f"                        int o = (ch * {oh} + oy) * {ow} + ox;",
            f"                        for (ky = 0; ky < {a.kernel[0]}; ky++)",
            f"                            for (kx = 0; kx < {a.kernel[1]}; kx++)",
            f"                                if (count[{cell}] > count[lead[o]])",
            f"                                    lead[o] = {cell};",
            f"                        {y}[t * {outs} + o] = {x}[t * {units} + lead[o]];",
            "                    }", "        }", "    }"]
