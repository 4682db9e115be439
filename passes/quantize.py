"""quantize: turn a float (or calibrated MP) graph into signed fixed point `fx` ops.

Formats come from calibration ranges (activation capture through `mpc.calib`, float64):
- every input, and every activation that feeds a matmul, convolution or MP layer or leaves the
  graph, gets fx<W,F> with F the finest fraction whose range covers the largest |value| seen;
- weights get fx<W,F> per tensor from their own largest |value|;
- accumulators of matmul/conv are sized from the quantized weights and the input's integer range so
  that the exact sum cannot overflow (fraction Fx + Fw); biases join at the accumulator's fraction;
- MP layers (margin propagation, Nair et al.) become `fx.mp_dot`/`fx.mp_conv2d`: x·c is a
  re-reading of x's fraction (c a power of two), W/c a W-bit weight, γ a stored integer at the
  common fraction (bisection needs bit-length(γ) halvings), and each output gain·γD/2 the
  sum of signed powers of two that mp-calibrate chose, as left shifts of α - β at an output
  fraction where every shift is exact; its width bounds |α - β| <= max|x·c| + max|W/c| + γ.
Outputs are requantized to W bits and dequantized to f32, so the graph keeps its interface.
Average pools (global ones included) become fx.avgpool2d; the spiking ops of the lif target become
fx.encode, fx.lif and fx.decode (rules in mpc.fx.snn; time-major values are captured whole).

Options (`quantize{width=16,rounding=nearest,overflow=saturate,config=FILE.toml}`; `--quantize W`
and `--quantize-config FILE` set them). The report section `quantize` lists every tensor's format,
calibration range, headroom in bits and the fraction of calibration values that saturate; a note
warns by tensor name when a fraction is not zero.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mpc.calib import capture, per_shard
from mpc.data import random_data
from mpc.errors import BadFlag, UnsupportedOp
from mpc.fx import Overflow, Rounding, from_float
from mpc.fx.formats import (
    MAX_ACC,
    Config,
    bits_for,
    frac_for,
    fx,
    headroom_bits,
    load_config,
    saturating_fraction,
    shift_add_terms,
)
from mpc.fx.snn import SNN_RULES, time_major
from mpc.ir import DType, Graph, Op, Value, make_op
from mpc.ir.ops_mp import snap_shift_add
from mpc.passmanager import register_pass

PRODUCT_KINDS = ("nn.matmul", "nn.conv2d", "mp.dot", "mp.conv2d")
FLOAT_GAIN_TERMS = 3   # float MP gains are snapped to this many signed powers of two


@dataclass(frozen=True)
class QuantizeOptions:
    """Options of quantize: default width W, rounding and overflow of conversions, a TOML config file."""

    width: int = 16
    rounding: Rounding = Rounding.NEAREST
    overflow: Overflow = Overflow.SATURATE
    config: str = ""

    def __post_init__(self):
        if not 2 <= self.width <= 32:
            raise BadFlag(f"quantize: option width must be an integer from 2 to 32, got {self.width}")


class _Quantizer:
    """One run of the pass: the float graph, its calibration values, and the fx ops built so far."""

    def __init__(self, graph: Graph, values: dict[str, np.ndarray], opts: QuantizeOptions, config: Config):
        self.g, self.values, self.cfg = graph, values, config
        self.width = config.width or opts.width
        self.rounding = Rounding(config.rounding) if config.rounding else opts.rounding
        self.overflow = Overflow(config.overflow) if config.overflow else opts.overflow
        self.ops: list[Op] = []
        self.q: dict[int, Value] = {}        # float value id -> its fx value
        self.narrow: dict[int, Value] = {}   # float value id -> its W-bit fx value
        self.rows: list[dict] = []

    # -- formats -----------------------------------------------------------------------------
    def fmt(self, name: str, max_abs: float) -> DType:
        """The W-bit format of a tensor (config overrides first)."""
        o = self.cfg.tensors.get(name)
        width = o.width if o and o.width else self.width
        frac = o.frac if o and o.frac is not None else frac_for(max_abs, width)
        return fx(width, frac)

    def record(self, name: str, kind: str, dtype: DType, values: np.ndarray) -> None:
        """A report row for a tensor quantized from `values` (reals)."""
        m = float(np.abs(values).max(initial=0.0))
        self.rows.append({"tensor": name, "kind": kind, "format": str(dtype),
                          "min": float(values.min(initial=0.0)), "max": float(values.max(initial=0.0)),
                          "headroom_bits": round(headroom_bits(dtype, m), 3),
                          "saturating": saturating_fraction(dtype, values)})

    def emit(self, kind: str, operands: list[Value], attrs: dict, loc) -> Value:
        op = make_op(self.g, kind, operands, attrs, loc)
        self.ops.append(op)
        return op.result

    def weight(self, name: str, array: np.ndarray, dtype: DType) -> Value:
        """A new weight `@name.fx` holding `array` (reals) quantized to `dtype`."""
        q = from_float(array, dtype.frac, dtype.width, self.rounding, Overflow.SATURATE, dtype.numpy)
        return self.g.add_weight(f"{name}.fx", q, dtype=dtype)

    def qweight(self, v: Value, array: np.ndarray | None = None) -> tuple[Value, np.ndarray]:
        """A float weight quantized to its own W-bit format (recorded); the value and stored integers."""
        a = np.asarray(self.g.weights[v.name] if array is None else array, dtype=np.float64)
        dt = self.fmt("@" + v.name, float(np.abs(a).max(initial=0.0)))
        self.record("@" + v.name, "weight", dt, a)
        w = self.weight(v.name, a, dt)
        return w, self.g.weights[w.name].astype(np.int64)

    # -- activations -------------------------------------------------------------------------
    def activation(self, v: Value, loc) -> Value:
        """The W-bit fx form of float value v: quantized (an input) or requantized (a wide value)."""
        if id(v) in self.narrow:
            return self.narrow[id(v)]
        vals = self.values[v.name].astype(np.float64)
        dt = self.fmt(v.name, float(np.abs(vals).max(initial=0.0)))
        self.record(v.name, "activation", dt, vals)
        src = self.q.get(id(v))
        attrs = {"to": dt, "rounding": self.rounding, "overflow": self.overflow}
        out = self.emit("fx.cast" if src is not None else "fx.quantize", [src if src is not None else v], attrs, loc)
        self.narrow[id(v)] = out
        return out

    def wide(self, v: Value, loc) -> Value:
        """The fx form of v at whatever width it has (quantizing inputs on first use)."""
        if id(v) in self.q:
            return self.q[id(v)]
        if v.is_weight:
            raise UnsupportedOp("quantize", loc, f"weight @{v.name} used as an activation operand")
        return self.activation(v, loc)


def _product_bound(wq: np.ndarray, x: DType, axis: tuple[int, ...]) -> int:
    """max over outputs of Σ |w| · max|x| (x's most negative stored value): the exact sum's bound."""
    return int(np.abs(wq).sum(axis=axis).max(initial=0)) * (1 << (x.width - 1))


def _matmul(Q: _Quantizer, op: Op) -> Value:
    x = Q.activation(op.operands[0], op.loc)
    w, wq = Q.qweight(op.operands[1])
    frac = x.type.dtype.frac + w.type.dtype.frac
    width = _acc_width(op, _product_bound(wq, x.type.dtype, (0,)))
    return Q.emit("fx.matmul", [x, w], {"to": fx(width, frac)}, op.loc)


def _acc_width(op: Op, bound: int) -> int:
    width = bits_for(bound)
    if width > MAX_ACC:
        raise UnsupportedOp(op.kind, op.loc, f"its exact accumulator needs {width} bits (> {MAX_ACC})")
    return width


def _conv(Q: _Quantizer, op: Op) -> Value:
    x = Q.activation(op.operands[0], op.loc)
    w, wq = Q.qweight(op.operands[1])
    frac = x.type.dtype.frac + w.type.dtype.frac
    width = _acc_width(op, _product_bound(wq, x.type.dtype, (1, 2, 3)))
    a = op.attrs
    y = Q.emit("fx.conv2d", [x, w], {"to": fx(width, frac), "strides": a.strides, "pads": a.pads,
                                     "dilations": a.dilations, "group": a.group}, op.loc)
    if len(op.operands) == 3:
        b = np.asarray(Q.g.weights[op.operands[2].name], np.float64).reshape(-1, 1, 1)
        y = _add_weight(Q, op, y, op.operands[2].name, b)
    return y


def _add_weight(Q: _Quantizer, op: Op, a: Value, name: str, b: np.ndarray) -> Value:
    """a + b (b a float weight) at a's fraction; the result one bit wider than the wider operand."""
    at = a.type.dtype
    bound = int(np.abs(np.floor(np.ldexp(b, at.frac) + 0.5)).max(initial=0))
    bt = fx(bits_for(bound), at.frac)
    Q.record("@" + name, "bias", bt, b)
    bw = Q.weight(name, b, bt)
    to = fx(_acc_width(op, (1 << (max(at.width, bt.width) - 1))), at.frac)
    return Q.emit("fx.add", [a, bw], {"to": to}, op.loc)


def _add(Q: _Quantizer, op: Op) -> Value:
    x, y = op.operands
    if x.is_weight and not y.is_weight:
        x, y = y, x
    if y.is_weight:
        return _add_weight(Q, op, Q.wide(x, op.loc), y.name, np.asarray(Q.g.weights[y.name], np.float64))
    a, b = Q.wide(x, op.loc), Q.wide(y, op.loc)
    frac = max(a.type.dtype.frac, b.type.dtype.frac)
    width = max(a.type.dtype.width + frac - a.type.dtype.frac, b.type.dtype.width + frac - b.type.dtype.frac) + 1
    return Q.emit("fx.add", [a, b], {"to": fx(_acc_width(op, 1 << (width - 1)), frac)}, op.loc)


def _gain_shifts(op: Op, gain: np.ndarray, scale: float) -> tuple[list[list[tuple[int, int]]], int]:
    """Per output: the (sign, exponent) terms of gain·γD/2, and how many terms at most."""
    terms_cap = op.attrs.gain_terms or FLOAT_GAIN_TERMS
    per = []
    for g in gain.astype(np.float64):
        v = float(g) * scale
        if not op.attrs.gain_terms:
            v, _ = snap_shift_add(v, FLOAT_GAIN_TERMS)
        per.append(shift_add_terms(v, terms_cap))
    return per, max([len(t) for t in per] + [1])


def _mp(Q: _Quantizer, op: Op) -> Value:
    a = op.attrs
    x = Q.activation(op.operands[0], op.loc)
    w_float = np.asarray(Q.g.weights[op.operands[1].name], np.float64)
    c_shift = round(math.log2(a.c))
    w, wq = Q.qweight(op.operands[1], w_float / a.c)
    xd, wd = x.type.dtype, w.type.dtype
    common = max(xd.frac - c_shift, wd.frac)
    gamma = max(1, math.floor(math.ldexp(a.gamma, common) + 0.5))
    d = int(np.prod(w_float.shape[1:]))
    per, t = _gain_shifts(op, np.asarray(Q.g.weights[op.operands[2].name]), a.gamma * d / 2)
    lowest = min([e for terms in per for _, e in terms] + [0])
    out_frac = common - lowest
    shifts = np.zeros((len(per), t), np.int8)
    signs = np.zeros((len(per), t), np.int8)
    for h, terms in enumerate(per):
        for i, (s, e) in enumerate(terms):
            shifts[h, i], signs[h, i] = e - common + out_frac, s
    xmax = (1 << (xd.width - 1)) << (common - (xd.frac - c_shift))
    wmax = int(np.abs(wq).max(initial=0)) << (common - wd.frac)
    dmax = xmax + wmax + gamma
    bound = max([sum(dmax << int(sh) for sh, sg in zip(shifts[h], signs[h]) if sg) for h in range(len(per))] + [1])
    name = op.operands[2].name
    sv = Q.g.add_weight(f"{name}.shift", shifts, dtype=DType.i8)
    gv = Q.g.add_weight(f"{name}.sign", signs, dtype=DType.i8)
    attrs = {"gamma": gamma, "to": fx(_acc_width(op, bound), out_frac), "c_shift": c_shift}
    if op.kind == "mp.conv2d":
        attrs |= {"strides": a.strides, "pads": a.pads, "dilations": a.dilations, "group": a.group}
    y = Q.emit("fx.mp_dot" if op.kind == "mp.dot" else "fx.mp_conv2d", [x, w, sv, gv], attrs, op.loc)
    if len(op.operands) == 4:
        off = np.asarray(Q.g.weights[op.operands[3].name], np.float64)
        y = _add_weight(Q, op, y, op.operands[3].name, off.reshape((-1, 1, 1) if op.kind == "mp.conv2d" else -1))
    return y


def _same(kind: str, attr_names: tuple[str, ...] = ()):
    def rule(Q: _Quantizer, op: Op) -> Value:
        attrs = {n: getattr(op.attrs, n) for n in attr_names}
        return Q.emit(kind, [Q.wide(op.operands[0], op.loc)], attrs, op.loc)
    return rule


def _avgpool(Q: _Quantizer, op: Op) -> Value:
    a = op.attrs
    if any(a.pads) and not a.count_include_pad or a.ceil_mode or a.dilations != (1, 1):
        raise UnsupportedOp(op.kind, op.loc, "fixed point averages whole windows only (no ceil_mode, dilations, "
                                             "or pads without count_include_pad)")
    x = Q.wide(op.operands[0], op.loc)
    return Q.emit("fx.avgpool2d", [x], {"kernel": a.kernel, "to": x.type.dtype, "strides": a.strides,
                                        "pads": a.pads, "rounding": Q.rounding, "overflow": Q.overflow}, op.loc)


def _global_avgpool(Q: _Quantizer, op: Op) -> Value:
    x = Q.wide(op.operands[0], op.loc)
    kernel = tuple(x.type.shape[-2:])
    if not all(isinstance(d, int) for d in kernel):
        raise UnsupportedOp(op.kind, op.loc, f"fixed point averages a static window, got {x.type}")
    return Q.emit("fx.avgpool2d", [x], {"kernel": kernel, "to": x.type.dtype, "rounding": Q.rounding,
                                        "overflow": Q.overflow}, op.loc)


RULES = {
    "nn.matmul": _matmul, "nn.conv2d": _conv, "nn.add": _add, "mp.dot": _mp, "mp.conv2d": _mp,
    "nn.relu": _same("fx.relu"), "nn.avgpool2d": _avgpool,
    "nn.maxpool2d": _same("fx.maxpool2d", ("kernel", "strides", "pads", "dilations", "ceil_mode")),
    "nn.flatten": _same("nn.flatten", ("axis",)), "nn.reshape": _same("nn.reshape", ("shape",)),
    "nn.identity": _same("nn.identity"), "nn.dropout": _same("nn.identity"),
    "nn.global_avgpool": _global_avgpool,
    **SNN_RULES,   # spiking layers of the lif target: fx.encode, fx.lif, fx.decode (mpc.fx.snn)
}


def _calibration(graph: Graph, ctx) -> dict[str, np.ndarray]:
    """Every value's calibration samples (sorted, flattened: formats need only ranges), merged over shards."""
    data = ctx.dataset if ctx is not None and ctx.dataset is not None else random_data(graph, 256, 0)
    return {name: s.sorted_values for name, s in per_shard(data, lambda shard: _captured(graph, shard)).items()}


def _captured(graph: Graph, data) -> dict[str, np.ndarray]:
    timed = time_major(graph, ("snn.encode",), ("snn.decode",))
    if not timed:
        return capture(graph, data, [v.name for v in graph.inputs] + [lambda op: True], dtype=np.float64)
    steps: dict[str, list[np.ndarray]] = {}   # time-major values [T, N, ...] do not lead with the batch

    def keep(op, inputs, outputs):
        for r, a in zip(op.results, outputs):
            if id(r) in timed:
                steps.setdefault(r.name, []).append(np.asarray(a))
    values = capture(graph, data, [v.name for v in graph.inputs] + [lambda op: id(op.results[0]) not in timed],
                     dtype=np.float64, hook=keep)
    return values | {name: np.concatenate(parts, axis=1) for name, parts in steps.items()}


def _finish(Q: _Quantizer, graph: Graph) -> None:
    """Requantize and dequantize every output (keeping its name), then swap in the fx ops."""
    outs = []
    for v in graph.outputs:
        loc = v.producer.loc if v.producer else None
        outs.append((v.name, Q.emit("fx.dequantize", [Q.activation(v, loc)], {"to": v.type.dtype}, loc)))
    graph.ops = Q.ops
    graph.outputs = []
    for name, val in outs:
        val.name = name
        graph.outputs.append(val)


@register_pass("quantize", summary="float/MP graph to fixed-point fx ops with formats from calibration ranges",
               options=QuantizeOptions, needs_data=True)
def quantize(graph: Graph, ctx, options: QuantizeOptions) -> dict:
    """Rewrite every op into fx ops (see the module docstring); report formats per tensor."""
    config = load_config(options.config) if options.config else Config()
    values = _calibration(graph, ctx)
    Q = _Quantizer(graph, values, options, config)
    for op in list(graph.ops):
        rule = RULES.get(op.kind)
        if rule is None:
            raise UnsupportedOp(op.kind, op.loc, f"quantize has no fixed-point form for it (supported: "
                                                 f"{', '.join(sorted(RULES))})")
        Q.q[id(op.result)] = rule(Q, op)
    _finish(Q, graph)
    if ctx is not None:
        ctx.report.section("quantize", Q.rows)
        for r in Q.rows:
            if r["saturating"] > 0:
                ctx.report.note(f"quantize: warning: tensor '{r['tensor']}' ({r['format']}) saturates on "
                                f"{100 * r['saturating']:.3g}% of calibration values")
    return {"tensors": len(Q.rows), "width": Q.width,
            "saturating": sum(1 for r in Q.rows if r["saturating"] > 0)}
