"""Per-op C renderers of the C backend: each turns one fx op into a block of C99 for one sample.

A renderer gets the op and `Names` (the C expression of every operand and result, their element
types and per-sample shapes) and returns lines. Every block opens with a comment naming the op and
its location, so a reader (and the test that proves MP layers multiplierless) can find it.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from mpc.errors import UnsupportedOp
from mpc.fx import Overflow, Rounding
from mpc.ir import Op, Value
from mpc.ir.ops_fx import divide_terms


@dataclass
class Names:
    """C names: value -> buffer expression, its C element type and per-sample shape."""

    expr: dict[int, str]
    ctype: dict[int, str]
    shape: dict[int, tuple[int, ...]]

    def of(self, v: Value) -> str:
        """The C expression of value v."""
        return self.expr[id(v)]


RENDER: dict[str, Callable[[Op, Names], list[str]]] = {}


def registrar(table: dict):
    """A decorator `renders(*kinds)` that registers a renderer for op kinds in `table`."""
    def renders(*kinds: str):
        def deco(fn):
            for k in kinds:
                table[k] = fn
            return fn
        return deco
    return renders


renders = registrar(RENDER)


def ctype_of(width: int) -> str:
    """The C99 exact-width container for a signed width."""
    return f"int{next(b for b in (8, 16, 32, 64) if b >= width)}_t"


def ctype(dtype) -> str:
    """The C element type of an IR element type: float/double, or the container of a signed width."""
    if dtype.is_float:
        return {32: "float", 64: "double"}.get(dtype.width) or "float"
    return ctype_of(dtype.width)


def _ovf(op: Op, expr: str) -> str:
    to = op.results[0].type.dtype
    sat = int(op.attrs.overflow is Overflow.SATURATE)
    return f"({ctype_of(to.width)})mpc_overflow({expr}, {to.width}, {sat})"


def _nearest(op: Op) -> int:
    return int(op.attrs.rounding is Rounding.NEAREST)


def _head(op: Op, note: str = "") -> str:
    return f"    /* {op.kind} -> %{op.results[0].name} ({op.loc}){note} */"


def _size(n: Names, v: Value) -> int:
    return math.prod(n.shape[id(v)])


@renders("fx.quantize", "fx.dequantize", "nn.flatten", "nn.reshape", "nn.identity")
def _alias(op: Op, n: Names) -> list[str]:
    return []   # the C entry takes quantized integers and returns them; reshapes alias (see lower_names)


@renders("fx.cast")
def _cast(op: Op, n: Names) -> list[str]:
    s = op.operands[0].type.dtype.frac - op.results[0].type.dtype.frac
    x, y = n.of(op.operands[0]), n.of(op.results[0])
    return [_head(op), f"    for (i = 0; i < {_size(n, op.results[0])}; i++)",
            f"        {y}[i] = {_ovf(op, f'mpc_round_shift({x}[i], {s}, {_nearest(op)})')};"]


def _strides(full: tuple[int, ...], shape: tuple[int, ...]) -> list[int]:
    """Row-major strides of `shape` aligned right against `full`, 0 where it broadcasts."""
    shape = (1,) * (len(full) - len(shape)) + tuple(shape)
    out, acc = [0] * len(full), 1
    for i in range(len(full) - 1, -1, -1):
        out[i] = 0 if shape[i] == 1 and full[i] != 1 else acc
        acc *= shape[i]
    return out




@renders("fx.add")
def _add(op: Op, n: Names) -> list[str]:
    full = n.shape[id(op.results[0])]
    f = op.results[0].type.dtype.frac
    idx = [f"i{k}" for k in range(len(full))]
    lines = [_head(op), "    {", f"        int {', '.join(idx) or 'i0'};"] if full else [_head(op), "    {"]
    pad = "        "
    for k, d in enumerate(full):
        lines.append(f"{pad}for ({idx[k]} = 0; {idx[k]} < {d}; {idx[k]}++)")
        pad += "    "

    def at(v: Value) -> str:
        st = _strides(full, n.shape[id(v)])
        terms = [f"{idx[k]} * {s}" if s != 1 else idx[k] for k, s in enumerate(st) if s]
        return f"{n.of(v)}[{' + '.join(terms) or '0'}]"
    a, b = op.operands
    sa, sb = a.type.dtype.frac - f, b.type.dtype.frac - f
    r = _nearest(op)
    lines.append(f"{pad}{at(op.results[0])} = "
                 f"{_ovf(op, f'mpc_round_shift({at(a)}, {sa}, {r}) + mpc_round_shift({at(b)}, {sb}, {r})')};")
    return lines + ["    }"]


@renders("fx.relu")
def _relu(op: Op, n: Names) -> list[str]:
    x, y = n.of(op.operands[0]), n.of(op.results[0])
    return [_head(op), f"    for (i = 0; i < {_size(n, op.results[0])}; i++)",
            f"        {y}[i] = {x}[i] > 0 ? {x}[i] : 0;"]


def _acc_type(op: Op) -> str:
    # chosen by the c-accumulators lowering pass (acc_bits), not here
    return "int32_t" if op.attrs.acc_bits == 32 else "int64_t"


@renders("fx.matmul")
def _matmul(op: Op, n: Names) -> list[str]:
    x, w = op.operands
    if len(n.shape[id(x)]) != 1:
        return _matmul_rows(op, n)
    d, h = w.type.shape
    acc = _acc_type(op)
    if op.attrs.sparse:   # chosen by the c-sparse lowering pass: only W's non-zeros, per column h
        t = n.of(w)
        return [_head(op, " sparse"), f"    for (h = 0; h < {h}; h++) {{", f"        {acc} acc = 0;",
                f"        for (k = {t}_ptr[h]; k < {t}_ptr[h + 1]; k++)",
                f"            acc += ({acc}){n.of(x)}[{t}_idx[k]] * {t}_val[k];",
                f"        {n.of(op.results[0])}[h] = {_ovf(op, 'acc')};", "    }"]
    return [_head(op), f"    for (h = 0; h < {h}; h++) {{", f"        {acc} acc = 0;",
            f"        for (j = 0; j < {d}; j++)",
            f"            acc += ({acc}){n.of(x)}[j] * {n.of(w)}[j * {h} + h];",
            f"        {n.of(op.results[0])}[h] = {_ovf(op, 'acc')};", "    }"]


def _matmul_rows(op: Op, n: Names) -> list[str]:
    """Several rows per sample (time-major spikes [T, D]): the one-row loops inside a loop over rows,
    on pointers to row r of x and of the result."""
    x, w = op.operands
    rows, d, h = math.prod(n.shape[id(x)][:-1]), *w.type.shape
    xt, yt = ctype(x.type.dtype), ctype(op.results[0].type.dtype)
    inner = _matmul(op, Names({**n.expr, id(x): "xr", id(op.results[0]): "yr"}, n.ctype,
                              {**n.shape, id(x): (d,)}))
    return [inner[0], "    {", "        int r;", f"        for (r = 0; r < {rows}; r++) {{",
            f"            const {xt} *xr = {n.of(x)} + r * {d};", f"            {yt} *yr = {n.of(op.results[0])} + r * {h};",
            *("        " + line for line in inner[1:]), "        }", "    }"]


def _window(op: Op, n: Names, kernel, fill_taps: Callable[[str], list[str]], init: str, finish: str,
            acc: str = "int64_t") -> list[str]:
    """Loops over channels and output positions, and over the taps of a window that lie inside x."""
    a = op.attrs
    c, hh, ww = n.shape[id(op.operands[0])]
    _, oh, ow = n.shape[id(op.results[0])]
    x, y = n.of(op.operands[0]), n.of(op.results[0])
    dil = getattr(a, "dilations", (1, 1))
    return [_head(op), f"    for (ch = 0; ch < {c}; ch++)", f"        for (oy = 0; oy < {oh}; oy++)",
            f"            for (ox = 0; ox < {ow}; ox++) {{", f"                {acc} r = {init};",
            f"                for (ky = 0; ky < {kernel[0]}; ky++)", f"                    for (kx = 0; kx < {kernel[1]}; kx++) {{",
            f"                        int iy = oy * {a.strides[0]} - {a.pads[0]} + ky * {dil[0]};",
            f"                        int ix = ox * {a.strides[1]} - {a.pads[1]} + kx * {dil[1]};",
            f"                        if (iy < 0 || iy >= {hh} || ix < 0 || ix >= {ww})",
            "                            continue;",
            *(f"                        {t}" for t in fill_taps(f"{x}[(ch * {hh} + iy) * {ww} + ix]")),
            "                    }",
            f"                {y}[(ch * {oh} + oy) * {ow} + ox] = {finish};", "            }"]


@renders("fx.maxpool2d")
def _maxpool(op: Op, n: Names) -> list[str]:
    t = ctype_of(op.results[0].type.dtype.width)
    return _window(op, n, op.attrs.kernel, lambda v: [f"if ({v} > r)", f"    r = {v};"], "INT64_MIN", f"({t})r")


@renders("fx.avgpool2d")
def _avgpool(op: Op, n: Names) -> list[str]:
    area = op.attrs.kernel[0] * op.attrs.kernel[1]
    if area & (area - 1):   # not a power of two: an integer division (mpc_div_round), as the emulator
        up, d = divide_terms(op.attrs.kernel, op.operands[0].type.dtype.frac, op.attrs.to.frac)
        return _window(op, n, op.attrs.kernel, lambda v: [f"r += {v};"], "0",
                       _ovf(op, f"mpc_div_round(mpc_shl(r, {up}), {d}, {_nearest(op)})"))
    s = op.operands[0].type.dtype.frac + area.bit_length() - 1 - op.attrs.to.frac
    return _window(op, n, op.attrs.kernel, lambda v: [f"r += {v};"], "0",
                   _ovf(op, f"mpc_round_shift(r, {s}, {_nearest(op)})"))


@renders("fx.conv2d")
def _conv(op: Op, n: Names) -> list[str]:
    a = op.attrs
    x, w = op.operands
    _c, hh, ww = n.shape[id(x)]
    m, oh, ow = n.shape[id(op.results[0])]
    cg, kh, kw = w.type.shape[1:]
    mg = m // a.group
    acc = _acc_type(op)
    if a.sparse:   # chosen by the c-sparse lowering pass: only the non-zero weights of each channel
        return _conv_sparse(op, n)
    wi = f"((oc * {cg} + ci) * {kh} + ky) * {kw} + kx"
    xi = f"((g * {cg} + ci) * {hh} + iy) * {ww} + ix"
    return [_head(op), f"    for (g = 0; g < {a.group}; g++)", f"        for (oc = g * {mg}; oc < (g + 1) * {mg}; oc++)",
            f"            for (oy = 0; oy < {oh}; oy++)", f"                for (ox = 0; ox < {ow}; ox++) {{",
            f"                    {acc} acc = 0;", f"                    for (ci = 0; ci < {cg}; ci++)",
            f"                        for (ky = 0; ky < {kh}; ky++)",
            f"                            for (kx = 0; kx < {kw}; kx++) {{",
            f"                                int iy = oy * {a.strides[0]} - {a.pads[0]} + ky * {a.dilations[0]};",
            f"                                int ix = ox * {a.strides[1]} - {a.pads[1]} + kx * {a.dilations[1]};",
            f"                                if (iy < 0 || iy >= {hh} || ix < 0 || ix >= {ww})",
            "                                    continue;",
            f"                                acc += ({acc}){n.of(x)}[{xi}] * {n.of(w)}[{wi}];",
            "                            }",
            f"                    {n.of(op.results[0])}[(oc * {oh} + oy) * {ow} + ox] = {_ovf(op, 'acc')};",
            "                }"]


def _conv_sparse(op: Op, n: Names) -> list[str]:
    """fx.conv2d over the compressed table (_ptr, _ci, _ky, _kx, _val) of its non-zero weights."""
    a = op.attrs
    x, w = op.operands
    _c, hh, ww = n.shape[id(x)]
    m, oh, ow = n.shape[id(op.results[0])]
    cg, mg, t = w.type.shape[1], m // a.group, n.of(w)
    acc = _acc_type(op)
    base = "" if a.group == 1 else f"oc / {mg} * {cg} + "   # the group's first input channel
    return [_head(op, " sparse"), f"    for (oc = 0; oc < {m}; oc++)",
            f"        for (oy = 0; oy < {oh}; oy++)", f"            for (ox = 0; ox < {ow}; ox++) {{",
            f"                {acc} acc = 0;", f"                for (k = {t}_ptr[oc]; k < {t}_ptr[oc + 1]; k++) {{",
            f"                    int iy = oy * {a.strides[0]} - {a.pads[0]} + {t}_ky[k] * {a.dilations[0]};",
            f"                    int ix = ox * {a.strides[1]} - {a.pads[1]} + {t}_kx[k] * {a.dilations[1]};",
            f"                    if (iy < 0 || iy >= {hh} || ix < 0 || ix >= {ww})",
            "                        continue;",
            f"                    acc += ({acc}){n.of(x)}[(({base}{t}_ci[k]) * {hh} + iy) * {ww} + ix] * {t}_val[k];",
            "                }",
            f"                {n.of(op.results[0])}[(oc * {oh} + oy) * {ow} + ox] = {_ovf(op, 'acc')};",
            "            }"]


def _mp_shifts(op: Op) -> tuple[int, int]:
    xd, wd = op.operands[0].type.dtype, op.operands[1].type.dtype
    fx_ = xd.frac - op.attrs.c_shift
    common = max(fx_, wd.frac)
    return common - fx_, common - wd.frac


def _mp_output(op: Op, n: Names, row: str, out: str) -> list[str]:
    """The thresholds of the row's |x + w|, |x - w| and the shift-add gain (no multiply, no divide)."""
    halvings = op.attrs.gamma.bit_length()
    t = op.operands[2].type.shape[1]
    sh, sg = n.of(op.operands[2]), n.of(op.operands[3])
    return [(f"        d = mpc_mp_alpha(mp_a, {row}, {op.attrs.gamma}, {halvings})"
            f" - mpc_mp_alpha(mp_b, {row}, {op.attrs.gamma}, {halvings});"),
            "        y = 0;",
            f"        for (k = gk; k < gk + {t}; k++) {{",
            f"            if ({sg}[k] > 0)", f"                y += mpc_shl(d, {sh}[k]);",
            f"            else if ({sg}[k] < 0)", f"                y -= mpc_shl(d, {sh}[k]);", "        }",
            f"        gk += {t};", f"        {out} = {_ovf(op, 'y')};"]


@renders("fx.mp_dot")
def _mp_dot(op: Op, n: Names) -> list[str]:
    x, w = op.operands[:2]
    if len(n.shape[id(x)]) != 1:
        raise UnsupportedOp(op.kind, op.loc, "the C backend runs one row per sample (x must be [N, D])")
    h, d = w.type.shape
    sx, sw = _mp_shifts(op)
    return [_head(op, ": multiplierless begin"), "    wk = 0;", "    gk = 0;", f"    for (h = 0; h < {h}; h++) {{",
            f"        for (j = 0; j < {d}; j++) {{",
            f"            int64_t xs = mpc_shl({n.of(x)}[j], {sx}), ws = mpc_shl({n.of(w)}[wk + j], {sw});",
            "            mp_a[j] = xs + ws >= 0 ? xs + ws : -(xs + ws);",
            "            mp_b[j] = xs - ws >= 0 ? xs - ws : -(xs - ws);", "        }",
            f"        wk += {d};", *_mp_output(op, n, str(d), f"{n.of(op.results[0])}[h]"), "    }",
            "    /* multiplierless end */"]


@renders("fx.mp_conv2d")
def _mp_conv(op: Op, n: Names) -> list[str]:
    lines = [_head(op, ": multiplierless begin")]
    for g in range(op.attrs.group):   # one block per group: channel ranges are constants, no index products
        lines += _mp_conv_group(op, n, g)
    return lines + ["    /* multiplierless end */"]


def _mp_conv_group(op: Op, n: Names, g: int) -> list[str]:
    a = op.attrs
    x, w = op.operands[:2]
    _c, hh, ww = n.shape[id(x)]
    m, oh, ow = n.shape[id(op.results[0])]
    cg, kh, kw = w.type.shape[1:]
    d, mg = cg * kh * kw, m // a.group
    sx, sw = _mp_shifts(op)
    out = n.of(op.results[0])
    return [f"    for (oy = 0; oy < {oh}; oy++)", f"    for (ox = 0; ox < {ow}; ox++) {{",
            "        j = 0;", f"        for (ci = {g * cg}; ci < {(g + 1) * cg}; ci++)",
            f"            for (ky = 0; ky < {kh}; ky++)", f"                for (kx = 0; kx < {kw}; kx++) {{",
            f"                    int iy = oy * {a.strides[0]} - {a.pads[0]} + ky * {a.dilations[0]};",
            f"                    int ix = ox * {a.strides[1]} - {a.pads[1]} + kx * {a.dilations[1]};",
            f"                    mp_x[j++] = (iy < 0 || iy >= {hh} || ix < 0 || ix >= {ww}) ? 0 :",
            f"                        mpc_shl({n.of(x)}[(ci * {hh} + iy) * {ww} + ix], {sx});",
            "                }",
            f"        wk = {g * mg * d};", f"        gk = {g * mg * op.operands[2].type.shape[1]};",
            f"        for (oc = {g * mg}; oc < {(g + 1) * mg}; oc++) {{",
            f"            for (j = 0; j < {d}; j++) {{",
            f"                int64_t ws = mpc_shl({n.of(w)}[wk + j], {sw});",
            "                mp_a[j] = mp_x[j] + ws >= 0 ? mp_x[j] + ws : -(mp_x[j] + ws);",
            "                mp_b[j] = mp_x[j] - ws >= 0 ? mp_x[j] - ws : -(mp_x[j] - ws);", "            }",
            f"            wk += {d};",
            *("    " + s for s in _mp_output(op, n, str(d), f"{out}[(oc * {oh} + oy) * {ow} + ox]")),
            "        }", "    }"]
