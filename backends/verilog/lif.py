"""Verilog for the spiking layers: hw.lif (accumulate, compare, reset), hw.spike_dense (spike-gated
accumulate, no multiplier), fx.encode and fx.decode, and the element-wise stages on time-major values.

A time-major value [T, N, ...] travels as one bus per sample holding all T steps, step-major: element
(t, i) at index t·U + i (U elements per step), the layout of the C backend. Each sequential layer takes
a whole sample, runs its time loop as a state machine (IDLE, RUN, DONE, the stream protocol of
layers.py) and offers all T steps at once.

hw.lif visits (step t, group g of P units) once per cycle: the input, membrane and refractory registers
rotate by P units per cycle, so every PE reads and writes fixed bit positions (no multiplexer over
units). The leak beta·u is a sum of shifted copies of u (beta is a constant), then a rounding shift.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
from mpc.backends.verilog.elementwise import render_add, render_cast, render_relu
from mpc.backends.verilog.layers import mac_schedule, ports, render_mac, render_mp
from mpc.backends.verilog.text import bits_for, lit, pack, rom, saturate, sext, slit

from mpc.errors import UnsupportedOp
from mpc.fx.arith import Overflow, Rounding
from mpc.ir import Op, TensorType, Value
from mpc.ir.ops_snn import ResetMode


def time_major(graph) -> set[str]:
    """Names of the time-major values: fx.encode's results and what ops compute from them, up to fx.decode."""
    out: set[str] = set()
    for op in graph.ops:
        if op.kind == "fx.encode" or (op.kind != "fx.decode" and any(v.name in out for v in op.operands
                                                                      if not v.is_weight)):
            out.update(r.name for r in op.results)
    return out


def sample_elements(graph, v: Value) -> int:
    """Elements of one sample of v: T·U for a time-major [T, N, ...] value, else the product after N."""
    if v.name in time_major(graph):
        return v.type.shape[0] * math.prod(v.type.shape[2:])
    return math.prod(v.type.shape[1:])


def _per_sample(v: Value) -> Value:
    """A stand-in for a time-major value with the batch axis first: [N, T, ...] (same per-sample layout)."""
    s = v.type.shape
    return Value(v.name, TensorType(v.type.dtype, ("N", s[0]) + tuple(s[2:])), is_weight=v.is_weight)


def _stage(render):
    """An element-wise renderer that also takes time-major operands (it sees them as [N, T, ...])."""
    def wrapped(op, graph, name: str) -> str:
        tm = time_major(graph)
        if op.results[0].name not in tm:
            return render(op, graph, name)
        ins = [v if v.is_weight else _per_sample(v) for v in op.operands]
        return render(Op(op.kind, ins, [_per_sample(op.results[0])], op.attrs, op.loc), graph, name)
    wrapped.__doc__ = f"{render.__doc__} (time-major operands too)"
    return wrapped


def _comb(name: str, doc: str, n_in: int, w_in: int, n_out: int, w_out: int, body: list[str]) -> str:
    lines = ports(name, n_in, w_in, n_out, w_out, [doc], False)
    return "\n".join(lines + ["    assign out_valid = in_valid;", "    assign in_ready = out_ready;", *body,
                              "endmodule", ""])


def render_encode(op, graph, name: str) -> str:
    """fx.encode: the input vector repeated at every step (wires only)."""
    n, w, steps = math.prod(op.operands[0].type.shape[1:]), op.operands[0].type.dtype.width, op.attrs.timesteps
    return _comb(name, f"{name}: fx.encode, {n} elements repeated over {steps} steps (wires)", n, w, n * steps, w,
                 [f"    assign out_data = {{{steps}{{in_data}}}};"])


def render_decode(op, graph, name: str) -> str:
    """fx.decode: the exact sum over the steps of each element, then overflow to the result's width."""
    x, to = op.operands[0], op.attrs.to
    steps, u, wx = x.type.shape[0], math.prod(x.type.shape[2:]), x.type.dtype.width
    iw = wx + bits_for(steps) + 1
    body = [f"    reg [{u * to.width - 1}:0] y;", f"    reg signed [{iw - 1}:0] acc;", f"    reg [{to.width - 1}:0] yo;",
            "    integer i, t;", "    always @* begin", f"        y = {u * to.width}'d0;",
            f"        for (i = 0; i < {u}; i = i + 1) begin", f"            acc = {slit(0, iw)};",
            f"            for (t = 0; t < {steps}; t = t + 1)",
            f"                acc = acc + $signed({sext('in_data', f'(t * {u} + i) * {wx}', wx, iw)});",
            *("            " + s for s in saturate("yo", "acc", iw, to.width, op.attrs.overflow is Overflow.WRAP)),
            f"            y[i * {to.width} +: {to.width}] = yo;", "        end", "    end", "    assign out_data = y;"]
    return _comb(name, f"{name}: fx.decode, sum over {steps} steps of {u} elements (combinational)",
                 steps * u, wx, u, to.width, body)


def _controller(run_cycles: int, extra_start: str) -> list[str]:
    """State register, the cycle counter k of RUN and the clocked block's opening (IDLE, RUN, DONE)."""
    kb = bits_for(run_cycles)
    return ["    localparam [1:0] IDLE = 2'd0, RUN = 2'd1, DONE = 2'd2;", "    reg [1:0] state;",
            f"    reg [{kb - 1}:0] k;", "    assign in_ready = state == IDLE;", "    assign out_valid = state == DONE;",
            "", "    always @(posedge clk) begin", "        if (rst) state <= IDLE;", "        else begin",
            f"            if (state == IDLE && in_valid) begin k <= {kb}'d0; {extra_start}state <= RUN; end",
            "            if (state == RUN) begin", f"                k <= k + {kb}'d1;",
            f"                if (k == {lit(run_cycles - 1, kb)}) state <= DONE;", "            end",
            "            if (state == DONE && out_ready) state <= IDLE;", "        end", "    end"]


def _rotate(reg: str, total: int, step: int, new: str) -> str:
    """`reg` (total bits) shifted down by `step` bits with `new` entering at the top."""
    return f"{reg} <= {new};" if total == step else f"{reg} <= {{{new}, {reg}[{total - 1}:{step}]}};"


def unit_values(op, graph, i: int) -> list[int]:
    """theta (i = 1) or u0 (i = 2) for every unit of a step, in bus order (one value or one per channel)."""
    v = np.asarray(graph.weights[op.operands[i].name], np.int64).reshape(-1)
    shape = op.operands[0].type.shape[2:]
    inner = math.prod(shape[1:])
    return [int(v[0] if v.size == 1 else v[(u // inner) % v.size]) for u in range(math.prod(shape))]


def _leak(a, iw: int) -> str:
    """beta·u shifted right by beta_frac with the op's rounding, as shifts and adds of u."""
    if a.beta == 1 << a.beta_frac:
        return "ui"
    terms = [f"(ui <<< {b})" for b in range(a.beta.bit_length()) if a.beta >> b & 1] or [slit(0, iw)]
    if a.beta_frac and a.rounding is Rounding.NEAREST:
        terms.append(slit(1 << (a.beta_frac - 1), iw))
    return f"(({' + '.join(terms)}) >>> {a.beta_frac})"


def _wide(v: str, bits: int, wrap: bool) -> list[str]:
    """Declaration of the wide sum; wrapping keeps only its low bits on purpose, so lint is told."""
    decl = f"        reg signed [{bits - 1}:0] {v};"
    if not wrap:
        return [decl]
    return ["        /* verilator lint_off UNUSEDSIGNAL */", decl, "        /* verilator lint_on UNUSEDSIGNAL */"]


def _lif_pe(a, wx: int, iw: int, wb: int) -> list[str]:
    """One PE: leak, add the input, overflow to mem_bits, compare with theta, reset; spike out."""
    mb, soft = a.mem_bits, a.reset is ResetMode.SOFT
    refr = a.refractory > 0
    lines = [f"        wire signed [{iw - 1}:0] xi = $signed({sext('xr', f'p * {wx}', wx, iw)});",
             f"        wire signed [{iw - 1}:0] ui = $signed({sext('ur', f'p * {mb}', mb, iw)});",
             f"        wire signed [{iw - 1}:0] th = $signed(thr[p * {iw} +: {iw}]);",
             f"        wire active = {f'wr[p * {wb} +: {wb}] == {wb}' + chr(39) + 'd0' if refr else '1' + chr(39) + 'b1'};",
             *_wide("v", iw, a.overflow is Overflow.WRAP), f"        reg signed [{iw - 1}:0] vo;",
             f"        reg [{mb - 1}:0] vm, nu;", "        reg fire;",
             "        always @* begin", f"            v = {_leak(a, iw)} + xi;",
             *("            " + s for s in saturate("vm", "v", iw, mb, a.overflow is Overflow.WRAP)),
             f"            vo = $signed({sext('vm', '0', mb, iw)});", "            fire = active && vo >= th;",
             # mem_bits arithmetic is exact here: a spike means theta <= v, so 0 <= v - theta < 2^(mem_bits-1)
             f"            nu = !active ? ur[p * {mb} +: {mb}] : fire ? {f'vm - thr[p * {iw} +: {mb}]' if soft else lit(0, mb)} : vm;",
             "        end", f"        assign un[p * {mb} +: {mb}] = nu;", "        assign sn[p * 2 +: 2] = {1'b0, fire};"]
    if refr:
        w = f"wr[p * {wb} +: {wb}]"
        lines.append(f"        assign wn[p * {wb} +: {wb}] = !active ? {w} - {wb}'d1 : fire ? {lit(a.refractory, wb)} "
                     f": {wb}'d0;")
    return lines


def _theta(op, graph, p: int, groups: int, iw: int) -> tuple[list[str], bool]:
    """thr, the P thresholds of the current group (a constant, or a ROM over groups); whether g is needed."""
    th = unit_values(op, graph, 1)
    if len(set(th)) == 1:
        return [f"    wire [{p * iw - 1}:0] thr = {lit(pack([th[0]] * p, iw), p * iw)};"], False
    gb = bits_for(groups)
    words = [pack(th[g * p:(g + 1) * p], iw) for g in range(groups)]
    return [f"    reg [{gb - 1}:0] g;", *rom("throm", gb, p * iw, words), f"    wire [{p * iw - 1}:0] thr = throm(g);"], True


def render_lif(op, graph, name: str) -> str:
    """The Verilog module of one hw.lif op: T·U/P cycles, P neurons of one step per cycle."""
    a, x = op.attrs, op.operands[0]
    steps, u, wx = x.type.shape[0], math.prod(x.type.shape[2:]), x.type.dtype.width
    p, mb = a.parallel, a.mem_bits
    groups, refr = u // p, a.refractory > 0
    th_bits = max(v.bit_length() for v in unit_values(op, graph, 1)) + 1
    iw, wb = max(mb + a.beta_frac + 3, th_bits + 1), max(1, a.refractory.bit_length())
    doc = [(f"{name}: integer LIF layer, {u} neurons x {steps} steps, {p} PE(s), {steps * groups} cycles "
            f"(reset {a.reset.value}, beta {a.beta}/2^{a.beta_frac}, refractory {a.refractory})"),
           f"x {x.type.dtype}, membrane {mb} bits, spikes fx<2,0> (0 or 1)"]
    th_lines, use_g = _theta(op, graph, p, groups, iw)
    gb = bits_for(groups)
    start = f"xr <= in_data; ur <= U0; {f'wr <= {u * wb}{chr(39)}d0; ' if refr else ''}{f'g <= {gb}{chr(39)}d0; ' if use_g else ''}"
    nx, nu, ns = steps * u * wx, u * mb, steps * u * 2
    run = [_rotate("xr", nx, p * wx, f"xr[{p * wx - 1}:0]"), _rotate("ur", nu, p * mb, "un"),
           _rotate("y", ns, p * 2, "sn"), *([_rotate("wr", u * wb, p * wb, "wn")] if refr else []),
           *([f"g <= g == {lit(groups - 1, gb)} ? {gb}'d0 : g + {gb}'d1;"] if use_g else [])]
    lines = ports(name, steps * u, wx, steps * u, 2, doc)
    lines += [f"    localparam [{nu - 1}:0] U0 = {lit(pack(unit_values(op, graph, 2), mb), nu)};",
              f"    reg [{nx - 1}:0] xr;", f"    reg [{nu - 1}:0] ur;", f"    reg [{ns - 1}:0] y;",
              f"    wire [{p * mb - 1}:0] un;", f"    wire [{p * 2 - 1}:0] sn;",
              *([f"    reg [{u * wb - 1}:0] wr;", f"    wire [{p * wb - 1}:0] wn;"] if refr else []), *th_lines,
              "    assign out_data = y;", *_controller(steps * groups, ""),
              "    always @(posedge clk) begin", f"        if (state == IDLE && in_valid) begin {start}end",
              "        if (state == RUN) begin", *("            " + r for r in run), "        end", "    end", "",
              "    genvar p;", f"    generate for (p = 0; p < {p}; p = p + 1) begin : pe", *_lif_pe(a, wx, iw, wb),
              "    end endgenerate", "endmodule", ""]
    return "\n".join(lines)


def render_spike_dense(op, graph, name: str) -> str:
    """The Verilog module of one hw.spike_dense op: P PEs with one accumulator per step; per cycle one
    input j, and each accumulator adds w[j] where input j spiked at its step (a gate, no multiplier)."""
    a, s = op.attrs, op.operands[0]
    w = np.asarray(graph.weights[op.operands[1].name])
    (d, h), steps = w.shape, s.type.shape[0]
    wd, to, p, aw = op.operands[1].type.dtype, a.to, a.parallel, a.width
    sched = mac_schedule(w, p)
    e, jb, eb = len(sched), bits_for(d), bits_for(len(sched))
    word = p * wd.width + jb + 2
    words = [pack(ws, wd.width) | (j << (p * wd.width)) | (int(f) << (p * wd.width + jb)) |
             (int(last) << (p * wd.width + jb + 1)) for _, j, ws, f, last in sched]
    doc = [(f"{name}: spike-gated accumulate {d} -> {h} x {steps} steps (no multiplier), {p} PE(s) x {steps} "
            f"accumulators, {e} schedule entries"), f"w {wd}, y {to}; accumulators {aw} bits"]
    hb = h * to.width
    lines = ports(name, steps * d, 2, steps * h, to.width, doc)
    lines += [*_controller(e, ""), f"    reg [{steps * d - 1}:0] sp;", *rom("mrom", eb, word, words), f"    wire [{word - 1}:0] ent = mrom(k);",
              f"    wire [{jb - 1}:0] j = ent[{p * wd.width} +: {jb}];", f"    wire first = ent[{p * wd.width + jb}];",
              f"    wire last = ent[{p * wd.width + jb + 1}];", "    integer i;", "    always @(posedge clk)",
              f"        if (state == IDLE && in_valid) for (i = 0; i < {steps * d}; i = i + 1) sp[i] <= in_data[2 * i];",
              "", "    genvar t, p;", f"    generate for (t = 0; t < {steps}; t = t + 1) begin : st",
              f"        wire [{d - 1}:0] sv = sp[t * {d} +: {d}];", "        wire hit = sv[j];",
              f"        wire [{p * to.width - 1}:0] ysat;", f"        reg [{hb - 1}:0] y;",
              f"        for (p = 0; p < {p}; p = p + 1) begin : pe",
              f"            wire signed [{aw - 1}:0] we = $signed({sext('ent', f'p * {wd.width}', wd.width, aw)});",
              f"            reg signed [{aw - 1}:0] acc, nxt;", f"            reg [{to.width - 1}:0] yo;",
              "            always @* begin", f"                nxt = (first ? {slit(0, aw)} : acc) + (hit ? we : {slit(0, aw)});",
              *("                " + x for x in saturate("yo", "nxt", aw, to.width, a.overflow is Overflow.WRAP)),
              "            end", "            always @(posedge clk) if (state == RUN) acc <= nxt;",
              f"            assign ysat[p * {to.width} +: {to.width}] = yo;", "        end",
              f"        always @(posedge clk) if (state == RUN && last) {_rotate('y', hb, p * to.width, 'ysat')}",
              f"        assign out_data[t * {hb} +: {hb}] = y;", "    end endgenerate", "endmodule", ""]
    return "\n".join(lines)


def lif_cycles(op) -> int:
    """Cycles from taking an input to offering the output of an hw.lif layer."""
    return op.operands[0].type.shape[0] * math.prod(op.operands[0].type.shape[2:]) // op.attrs.parallel + 1


def spike_dense_cycles(op, graph) -> int:
    """Cycles from taking an input to offering the output of an hw.spike_dense layer."""
    return len(mac_schedule(np.asarray(graph.weights[op.operands[1].name]), op.attrs.parallel)) + 1



def _lif_counts(op, graph) -> dict:
    a, x = op.attrs, op.operands[0]
    steps, u, wx, p, mb = x.type.shape[0], math.prod(x.type.shape[2:]), x.type.dtype.width, a.parallel, a.mem_bits
    groups, wb = u // p, max(1, a.refractory.bit_length())
    th = unit_values(op, graph, 1)
    iw = max(mb + a.beta_frac + 3, max(v.bit_length() for v in th) + 1)
    leak = 0 if a.beta == 1 << a.beta_frac else max(0, a.beta.bit_count() - 1) + \
        int(a.beta_frac > 0 and a.rounding is Rounding.NEAREST)
    adders = Counter({iw: p * (1 + leak)})   # per PE: the leak's shift-adds and the add of x
    adders[mb] += p * (a.reset is ResetMode.SOFT)
    adders[wb] += p * (a.refractory > 0)
    cmp = p * (1 + 2 * (a.overflow is Overflow.SATURATE) + (a.refractory > 0))   # theta, saturation, wait == 0
    rom_th = 0 if len(set(th)) == 1 else groups * p * iw
    use_g = rom_th > 0
    ff = 2 + bits_for(steps * groups) + steps * u * wx + u * mb + steps * u * 2 + \
        (u * wb if a.refractory else 0) + (bits_for(groups) if use_g else 0)
    return {"kind": op.kind, "adders": adders, "comparators": cmp, "multipliers": 0, "flip_flops": ff,
            "rom_bits": rom_th + u * mb, "latency_cycles": lif_cycles(op), "pe": p}


def _dense_counts(op, graph) -> dict:
    a = op.attrs
    w = np.asarray(graph.weights[op.operands[1].name])
    (d, h), steps, p = w.shape, op.operands[0].type.shape[0], a.parallel
    entries = len(mac_schedule(w, p))
    word = p * op.operands[1].type.dtype.width + bits_for(d) + 2
    ff = 2 + bits_for(entries) + steps * d + steps * h * a.to.width + steps * p * a.width
    return {"kind": op.kind, "adders": Counter({a.width: steps * p}), "comparators": 2 * steps * p,
            "multipliers": 0, "flip_flops": ff, "rom_bits": entries * word,
            "latency_cycles": spike_dense_cycles(op, graph), "pe": p}


def _comb_counts(op, graph) -> dict:
    """Combinational stages on time-major values: encode is wires; decode a chain of adds per element."""
    n = sample_elements(graph, op.results[0])
    wo = op.results[0].type.dtype.width
    if op.kind == "fx.encode":
        adders, cmp = Counter(), 0
    elif op.kind == "fx.decode":
        x = op.operands[0]
        adders, cmp = Counter({x.type.dtype.width + bits_for(x.type.shape[0]) + 1: n * x.type.shape[0]}), 2 * n
    else:
        adders = Counter() if op.kind == "fx.relu" else Counter({wo + 2: n})
        cmp = n * (1 if op.kind == "fx.relu" else 2)
    return {"kind": op.kind, "adders": adders, "comparators": cmp, "multipliers": 0, "flip_flops": 0,
            "rom_bits": 0, "latency_cycles": 0, "pe": n}


def count_snn(op, graph) -> dict | None:
    """Analytical resources of a spiking module (the keys of resources.py), None for other modules."""
    if op.kind == "hw.lif":
        return _lif_counts(op, graph)
    if op.kind == "hw.spike_dense":
        return _dense_counts(op, graph)
    if op.kind in ("fx.encode", "fx.decode") or op.results[0].name in time_major(graph):
        return _comb_counts(op, graph)
    return None

def _one_step(render):
    """A renderer of layers that read one [N, ...] sample, refusing a time-major operand by name."""
    def wrapped(op, graph, name: str) -> str:
        if op.operands[0].name in time_major(graph):
            raise UnsupportedOp(op.kind, op.loc, "the verilog backend renders this layer on one sample [N, ...], "
                                "not on time-major values [T, N, ...] (only spikes of a LIF layer feed a synapse)")
        return render(op, graph, name)
    wrapped.__doc__ = render.__doc__
    return wrapped


MODULES = {"hw.mac_dense": _one_step(render_mac), "hw.mp_dense": _one_step(render_mp),
           "hw.mp_conv2d": _one_step(render_mp), "hw.lif": render_lif, "hw.spike_dense": render_spike_dense, "fx.encode": render_encode,
           "fx.decode": render_decode, "fx.add": _stage(render_add), "fx.cast": _stage(render_cast),
           "fx.relu": _stage(render_relu)}

__all__ = ["MODULES", "count_snn", "lif_cycles", "render_decode", "render_encode", "render_lif", "render_spike_dense",
           "sample_elements", "spike_dense_cycles", "time_major", "unit_values"]
