"""Per-op C renderers for float graphs (a model converted without --quantize): f32 arithmetic in C99.

Same layout and loop structure as the fixed-point renderers (render.py), with `float` values and
no rounding or overflow. Sums run in float in the C's own order, so results agree with the
interpreter (NumPy, BLAS) to rounding, not bit for bit; `mpc verify --emit c` reports the largest
difference for float graphs.
"""
from __future__ import annotations

from mpc.backends.c.render import Names, _head, _size, _strides, _window, registrar

from mpc.errors import UnsupportedOp
from mpc.ir import Op

RENDER_FLOAT: dict = {}


renders = registrar(RENDER_FLOAT)   # float renderers for op kinds


@renders("nn.flatten", "nn.reshape", "nn.identity", "nn.dropout")
def _alias(op: Op, n: Names) -> list[str]:
    return []


@renders("nn.relu")
def _relu(op: Op, n: Names) -> list[str]:
    x, y = n.of(op.operands[0]), n.of(op.results[0])
    return [_head(op), f"    for (i = 0; i < {_size(n, op.results[0])}; i++)",
            f"        {y}[i] = {x}[i] > 0.0f ? {x}[i] : 0.0f;"]


_OPS = {"nn.add": "+", "nn.sub": "-", "nn.mul": "*"}


@renders(*_OPS)
def _binary(op: Op, n: Names) -> list[str]:
    full = n.shape[id(op.results[0])]
    idx = [f"i{k}" for k in range(len(full))] or ["i0"]
    lines = [_head(op), "    {", f"        int {', '.join(idx)};"]
    pad = "        "
    for k, d in enumerate(full):
        lines.append(f"{pad}for ({idx[k]} = 0; {idx[k]} < {d}; {idx[k]}++)")
        pad += "    "

    def at(v) -> str:
        terms = [f"{idx[k]} * {s}" if s != 1 else idx[k] for k, s in enumerate(_strides(full, n.shape[id(v)])) if s]
        return f"{n.of(v)}[{' + '.join(terms) or '0'}]"
    a, b = op.operands
    return lines + [f"{pad}{at(op.results[0])} = {at(a)} {_OPS[op.kind]} {at(b)};", "    }"]


@renders("nn.matmul")
def _matmul(op: Op, n: Names) -> list[str]:
    x, w = op.operands
    if len(n.shape[id(x)]) != 1 or not w.is_weight or w.type.rank != 2:
        raise UnsupportedOp(op.kind, op.loc, "the C backend multiplies one row per sample by a 2-D weight")
    d, h = w.type.shape
    return [_head(op), f"    for (h = 0; h < {h}; h++) {{", "        float acc = 0.0f;",
            f"        for (j = 0; j < {d}; j++)", f"            acc += {n.of(x)}[j] * {n.of(w)}[j * {h} + h];",
            f"        {n.of(op.results[0])}[h] = acc;", "    }"]


@renders("nn.maxpool2d")
def _maxpool(op: Op, n: Names) -> list[str]:
    return _window(op, n, op.attrs.kernel, lambda v: [f"if ({v} > r)", f"    r = {v};"], "-FLT_MAX", "r",
                   acc="float")


@renders("nn.conv2d")
def _conv(op: Op, n: Names) -> list[str]:
    a = op.attrs
    x, w = op.operands[:2]
    _c, hh, ww = n.shape[id(x)]
    m, oh, ow = n.shape[id(op.results[0])]
    cg, kh, kw = w.type.shape[1:]
    mg = m // a.group
    bias = f"{n.of(op.operands[2])}[oc]" if len(op.operands) == 3 else "0.0f"
    return [_head(op), f"    for (g = 0; g < {a.group}; g++)", f"        for (oc = g * {mg}; oc < (g + 1) * {mg}; oc++)",
            f"            for (oy = 0; oy < {oh}; oy++)", f"                for (ox = 0; ox < {ow}; ox++) {{",
            f"                    float acc = {bias};", f"                    for (ci = 0; ci < {cg}; ci++)",
            f"                        for (ky = 0; ky < {kh}; ky++)",
            f"                            for (kx = 0; kx < {kw}; kx++) {{",
            f"                                int iy = oy * {a.strides[0]} - {a.pads[0]} + ky * {a.dilations[0]};",
            f"                                int ix = ox * {a.strides[1]} - {a.pads[1]} + kx * {a.dilations[1]};",
            f"                                if (iy < 0 || iy >= {hh} || ix < 0 || ix >= {ww})",
            "                                    continue;",
            (f"                                acc += {n.of(x)}[((g * {cg} + ci) * {hh} + iy) * {ww} + ix]"
            f" * {n.of(w)}[((oc * {cg} + ci) * {kh} + ky) * {kw} + kx];"),
            "                            }",
            f"                    {n.of(op.results[0])}[(oc * {oh} + oy) * {ow} + ox] = acc;",
            "                }"]
