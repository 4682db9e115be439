"""Verilog for the sequential layer datapaths: hw.mp_dense (multiplierless MP) and hw.mac_dense.

Both share one stream protocol and controller shape: in IDLE the module takes an input vector when
`in_valid` is high (in_ready = 1 only in IDLE), computes `parallel` neurons per group, shifts each
group's results into the output register, and in DONE holds out_valid until `out_ready`. Weights are
constant ROMs (case tables indexed by group or by schedule entry), so no file has to travel with rtl/.
"""
from __future__ import annotations

import math

import numpy as np
from mpc.backends.verilog.text import bits_for, lit, pack, rom, saturate, sext, slit

from mpc.fx.arith import Overflow

SHIFT_BITS = 6   # gain shifts are in [0, 62]


def ports(name: str, n_in: int, w_in: int, n_out: int, w_out: int, doc: list[str], clocked: bool = True) -> list[str]:
    """Module header with the stream ports of every layer (combinational stages have no clk, rst)."""
    clock = ["    input  wire clk,", "    input  wire rst,"] if clocked else []
    return [*(f"// {d}" for d in doc), f"module {name} (", *clock,
            "    input  wire in_valid,", "    output wire in_ready,", f"    input  wire [{n_in * w_in - 1}:0] in_data,",
            "    output wire out_valid,", "    input  wire out_ready,", f"    output wire [{n_out * w_out - 1}:0] out_data",
            ");"]


def _controller(groups: int, run_states: list[str], pw: int, hw: int) -> list[str]:
    """Shared declarations (state, group counter unless groups = 0, output register) and the opening
    of the clocked block."""
    gb = bits_for(groups)
    states = ", ".join(f"{s} = 3'd{i + 1}" for i, s in enumerate(run_states))
    return [f"    localparam [2:0] IDLE = 3'd0, {states}, DONE = 3'd{len(run_states) + 1};",
            "    reg [2:0] state;", *([f"    reg [{gb - 1}:0] g;"] if groups else []), f"    reg [{hw - 1}:0] y;",
            f"    wire [{pw - 1}:0] ysat;",
            "    assign in_ready = state == IDLE;", "    assign out_valid = state == DONE;",
            "    assign out_data = y;", "", "    always @(posedge clk) begin",
            "        if (rst) begin", "            state <= IDLE;", *([f"            g <= {gb}'d0;"] if groups else []),
            "        end else begin",
            "            if (state == DONE && out_ready) state <= IDLE;"]


def _shift_in(pw: int, hw: int) -> str:
    """The output register after shifting one group's results in at the top."""
    return "ysat" if pw == hw else f"{{ysat, y[{hw - 1}:{pw}]}}"


def _gain(b: int, terms: int, wo: int, wrap: bool, gw: int) -> list[str]:
    """One PE's shift-add gain of alpha - beta in gw bits (see gain_width), a chain of T signed shifted
    terms, then overflow."""
    sgn, sh = f"sg[(p * {terms} + t) * 2 +: 2]", f"sh[(p * {terms} + t) * {SHIFT_BITS} +: {SHIFT_BITS}]"
    return [f"        wire signed [{b - 1}:0] diff = lo_a - lo_b;",
            f"        wire signed [{gw - 1}:0] dg = {{{{{gw - b}{{diff[{b - 1}]}}}}, diff}};", "        genvar t;",
            f"        for (t = 0; t < {terms}; t = t + 1) begin : term",
            f"            wire signed [{gw - 1}:0] v = dg <<< {sh};",
            f"            wire signed [{gw - 1}:0] s = {sgn} == 2'b01 ? v : {sgn} == 2'b11 ? -v : {gw}'sd0;",
            f"            wire signed [{gw - 1}:0] prev, acc;",
            f"            if (t == 0) begin : first assign prev = {gw}'sd0; end",
            "            else begin : next assign prev = term[t - 1].acc; end", "            assign acc = prev + s;",
            "        end", f"        wire signed [{gw - 1}:0] acc = term[{terms - 1}].acc;", f"        reg [{wo - 1}:0] yo;",
            "        always @* begin", *("            " + x for x in saturate("yo", "acc", gw, wo, wrap)), "        end",
            f"        assign ysat[p * {wo} +: {wo}] = yo;"]


def gain_width(op, graph) -> int:
    """Bits of the shift-add gain: 64 (the emulator's int64, whose shifts drop high bits) unless the
    largest shift keeps every term and their sum inside fewer bits, where both are exact and agree."""
    shifts = np.asarray(graph.weights[op.operands[2].name])
    need = op.attrs.width + int(shifts.max(initial=0)) + op.operands[2].type.shape[1].bit_length() + 1
    return min(64, need)


def _mp_abs(op, d: int, b: int, sx: int, sw: int, src: str = "x") -> list[str]:
    """|x + w| and |x - w| of every input (continuous assigns: they change only with the input or the
    group) and their maxima by a chain of comparators."""
    wx, ww = op.operands[0].type.dtype.width, op.operands[1].type.dtype.width
    xj, wj = f"($signed({sext(src, f'j * {wx}', wx, b)}) <<< {sx})", \
        f"($signed({sext('wr', f'(p * {d} + j) * {ww}', ww, b)}) <<< {sw})"
    lines = [f"        wire [{d * b - 1}:0] abs_a, abs_b;", "        genvar j;",
             f"        for (j = 0; j < {d}; j = j + 1) begin : el"]
    for side, sign in (("a", "+"), ("b", "-")):
        lines += [f"            wire signed [{b - 1}:0] u_{side} = {xj} {sign} {wj};",
                  f"            wire signed [{b - 1}:0] m_{side} = u_{side}[{b - 1}] ? -u_{side} : u_{side};",
                  f"            assign abs_{side}[j * {b} +: {b}] = m_{side};",
                  f"            wire signed [{b - 1}:0] prev_{side}, mx_{side};",
                  f"            if (j == 0) begin : first_{side} assign prev_{side} = {slit(0, b)}; end",
                  f"            else begin : next_{side} assign prev_{side} = el[j - 1].mx_{side}; end",
                  f"            assign mx_{side} = m_{side} > prev_{side} ? m_{side} : prev_{side};"]
    return lines + ["        end", f"        wire signed [{b - 1}:0] top_a = el[{d - 1}].mx_a;",
                    f"        wire signed [{b - 1}:0] top_b = el[{d - 1}].mx_b;"]


def _mp_sum(side: str, d: int, b: int) -> list[str]:
    """The adder tree of one side: f = sum over inputs of [a - mid]+ + [-a - mid]+, over the |x ± w|
    registered when the group starts (a pipeline register: the tree sees one change per group, so an
    event-driven simulator re-evaluates it once per bisection step, not once per input)."""
    zero = slit(0, b)
    return [f"        reg signed [{b - 1}:0] f_{side}, a_{side}, r_{side};", f"        integer j_{side};",
            f"        reg [{d * b - 1}:0] absq_{side};",
            f"        always @(posedge clk) if (state == INIT) absq_{side} <= abs_{side};",
            "        always @* begin", f"            f_{side} = {zero};",
            f"            for (j_{side} = 0; j_{side} < {d}; j_{side} = j_{side} + 1) begin",
            f"                a_{side} = absq_{side}[j_{side} * {b} +: {b}];",
            f"                r_{side} = a_{side} - mid_{side}; if (r_{side} > {zero}) f_{side} = f_{side} + r_{side};",
            f"                r_{side} = -a_{side} - mid_{side}; if (r_{side} > {zero}) f_{side} = f_{side} + r_{side};",
            "            end", "        end"]


def _mp_pe(op, d: int, b: int, sx: int, sw: int, src: str) -> list[str]:
    """One processing element: |x + w|, |x - w|, max, the two sums of [a - mid]+ + [-a - mid]+, bisection."""
    return [f"        reg signed [{b - 1}:0] lo_a, hi_a, lo_b, hi_b;",
            f"        wire signed [{b - 1}:0] mid_a = lo_a + ((hi_a - lo_a) >>> 1);",
            f"        wire signed [{b - 1}:0] mid_b = lo_b + ((hi_b - lo_b) >>> 1);",
            *_mp_abs(op, d, b, sx, sw, src), *_mp_sum("a", d, b), *_mp_sum("b", d, b),
            "        always @(posedge clk) begin", "            if (state == INIT) begin",
            "                lo_a <= top_a - GAMMA; hi_a <= top_a; lo_b <= top_b - GAMMA; hi_b <= top_b;",
            "            end else if (state == BISECT) begin",
            "                if (f_a >= GAMMA) lo_a <= mid_a; else hi_a <= mid_a;",
            "                if (f_b >= GAMMA) lo_b <= mid_b; else hi_b <= mid_b;", "            end", "        end"]


def _mp_roms(op, graph, groups: int, p: int) -> list[str]:
    w, sh, sg = (np.asarray(graph.weights[v.name]) for v in op.operands[1:4])
    w = w.reshape(w.shape[0], -1)   # a convolution's [M, C, kh, kw] as [M, C*kh*kw], the patch order
    d, ww, terms = w.shape[1], op.operands[1].type.dtype.width, sh.shape[1]
    gb = bits_for(groups)
    wrows = [pack(w[g * p:(g + 1) * p].reshape(-1), ww) for g in range(groups)]
    srows = [pack(sh[g * p:(g + 1) * p].reshape(-1), SHIFT_BITS) for g in range(groups)]
    grows = [pack(sg[g * p:(g + 1) * p].reshape(-1), 2) for g in range(groups)]
    return [*rom("wrom", gb, p * d * ww, wrows), *rom("shrom", gb, p * terms * SHIFT_BITS, srows),
            *rom("sgrom", gb, p * terms * 2, grows),
            f"    wire [{p * d * ww - 1}:0] wr = wrom(g);", f"    wire [{p * terms * SHIFT_BITS - 1}:0] sh = shrom(g);",
            f"    wire [{p * terms * 2 - 1}:0] sg = sgrom(g);"]


def patch_sources(op) -> list[list[int]]:
    """For each output position of an MP convolution (row-major), the input element index read by each
    patch entry (c, ky, kx) in order, or -1 where the window covers padding (a zero input)."""
    a = op.attrs
    _, c, hh, ww = op.operands[0].type.shape
    _, _, oh, ow = op.results[0].type.shape
    kh, kw = op.operands[1].type.shape[2:]
    out = []
    for oy in range(oh):
        for ox in range(ow):
            row = []
            for ch in range(c):
                for ky in range(kh):
                    for kx in range(kw):
                        iy = oy * a.strides[0] - a.pads[0] + ky * a.dilations[0]
                        ix = ox * a.strides[1] - a.pads[1] + kx * a.dilations[1]
                        inside = 0 <= iy < hh and 0 <= ix < ww
                        row.append((ch * hh + iy) * ww + ix if inside else -1)
            out.append(row)
    return out


def _patch_mux(op, d: int, wx: int, positions: int) -> list[str]:
    """The patch of the current output position: a case over positions of input slices (or zeros)."""
    pb = bits_for(positions)
    lines = [f"    reg [{d * wx - 1}:0] xp;", "    always @* begin", "        case (pos)"]
    for i, row in enumerate(patch_sources(op)):
        parts = [f"x[{src * wx} +: {wx}]" if src >= 0 else f"{wx}'d0" for src in reversed(row)]
        lines.append(f"            {pb}'d{i}: xp = {{{', '.join(parts)}}};")
    return lines + [f"            default: xp = {d * wx}'d0;", "        endcase", "    end"]


def _conv_out(m: int, positions: int, wo: int) -> list[str]:
    """Results arrive position-major (all channels of a position, then the next): out_data is NCHW
    (one process writes the whole bus, so a simulator sees one change per result change)."""
    return [f"    reg [{m * positions * wo - 1}:0] yn;", "    integer q, ch;", "    always @* begin",
            f"        yn = {m * positions * wo}'d0;", f"        for (q = 0; q < {positions}; q = q + 1)",
            f"            for (ch = 0; ch < {m}; ch = ch + 1)",
            f"                yn[(ch * {positions} + q) * {wo} +: {wo}] = y[(q * {m} + ch) * {wo} +: {wo}];",
            "    end", "    assign out_data = yn;"]


def _store(groups: int, gb: int, positions: int, shift_in: str) -> list[str]:
    """The STORE state: shift the group's results in; next group, next position, or DONE."""
    pb = bits_for(positions)
    if positions == 1:
        return ["            if (state == STORE) begin", f"                y <= {shift_in};",
                f"                if (g == {lit(groups - 1, gb)}) state <= DONE;",
                f"                else begin g <= g + {gb}'d1; state <= INIT; end", "            end"]
    return ["            if (state == STORE) begin", f"                y <= {shift_in};",
            f"                if (g != {lit(groups - 1, gb)}) begin g <= g + {gb}'d1; state <= INIT; end",
            (f"                else if (pos != {lit(positions - 1, pb)}) begin g <= {gb}'d0; pos <= pos + {pb}'d1; "
            "state <= INIT; end"), "                else state <= DONE;", "            end"]


def render_mp(op, graph, name: str) -> str:
    """The Verilog module of one hw.mp_dense or hw.mp_conv2d op (a convolution runs the same PEs on the
    patch of each output position in turn)."""
    a = op.attrs
    wshape = op.operands[1].type.shape
    h, d = wshape[0], math.prod(wshape[1:])
    conv = op.kind == "hw.mp_conv2d"
    positions = math.prod(op.results[0].type.shape[2:]) if conv else 1
    nin = math.prod(op.operands[0].type.shape[1:])
    terms = op.operands[2].type.shape[1]
    xd, wd, to = op.operands[0].type.dtype, op.operands[1].type.dtype, a.to
    fx_ = xd.frac - a.c_shift
    common = max(fx_, wd.frac)
    groups, p, b = h // a.parallel, a.parallel, a.width
    doc = [(f"{name}: margin propagation {'convolution' if conv else 'layer'} {d} -> {h}"
            f"{f' at {positions} positions' if conv else ''} (no multipliers), {p} PE(s), {groups * positions} "
            f"group(s) of {a.halvings + 2} cycles"),
           f"x {xd}, w {wd}, y {to}; gamma {a.gamma} at {common} fractional bits; datapath {b} bits"]
    cnt, gb, pb = bits_for(a.halvings), bits_for(groups), bits_for(positions)
    hw_bits = h * positions * to.width
    lines = ports(name, nin, xd.width, h * positions, to.width, doc)
    start = f"x <= in_data; g <= {gb}'d0;{f' pos <= {pb}' + chr(39) + 'd0;' if conv else ''} state <= INIT;"
    lines += [f"    localparam signed [{b - 1}:0] GAMMA = {slit(int(a.gamma), b)};",
              *_controller(groups, ["INIT", "BISECT", "STORE"], p * to.width, hw_bits),
              f"            if (state == IDLE && in_valid) begin {start} end",
              f"            if (state == INIT) begin k <= {cnt}'d0; state <= BISECT; end",
              "            if (state == BISECT) begin", f"                k <= k + {cnt}'d1;",
              f"                if (k == {lit(a.halvings - 1, cnt)}) state <= STORE;", "            end",
              *_store(groups, gb, positions, _shift_in(p * to.width, hw_bits)),
              "        end", "    end", "", f"    reg [{nin * xd.width - 1}:0] x;", f"    reg [{cnt - 1}:0] k;"]
    if conv:
        lines = [ln for ln in lines if ln != "    assign out_data = y;"] + _conv_out(h, positions, to.width)
        lines += [f"    reg [{pb - 1}:0] pos;", *_patch_mux(op, d, xd.width, positions)]
    lines += _mp_roms(op, graph, groups, p)
    lines += ["", "    genvar p;", f"    generate for (p = 0; p < {p}; p = p + 1) begin : pe",
              *_mp_pe(op, d, b, common - fx_, common - wd.frac, "xp" if conv else "x"),
              *_gain(b, terms, to.width, a.overflow is Overflow.WRAP, gain_width(op, graph)),
              "    end endgenerate", "endmodule", ""]
    return "\n".join(lines)


def mac_schedule(w: np.ndarray, p: int) -> list[tuple[int, int, list[int], bool, bool]]:
    """(group, input j, the P weights, first, last) for every input whose P weights are not all zero;
    a group whose weights are all zero keeps one entry (j = 0, zero weights) so its outputs are written."""
    d, h = w.shape
    out = []
    for g in range(h // p):
        cols = w[:, g * p:(g + 1) * p]
        js = [j for j in range(d) if np.any(cols[j] != 0)] or [0]
        out += [(g, j, [int(v) for v in cols[j]], i == 0, i == len(js) - 1) for i, j in enumerate(js)]
    return out


def render_mac(op, graph, name: str) -> str:
    """The Verilog module of one hw.mac_dense op: P multipliers, one (input, weights) entry per cycle."""
    a = op.attrs
    w = np.asarray(graph.weights[op.operands[1].name])
    d, h = w.shape
    xd, wd, to, p = op.operands[0].type.dtype, op.operands[1].type.dtype, a.to, a.parallel
    sched = mac_schedule(w, p)
    e, jb = len(sched), bits_for(d)
    pw, aw, word = xd.width + wd.width, a.width, p * wd.width + jb + 2
    words = [pack(ws, wd.width) | (j << (p * wd.width)) | (int(f) << (p * wd.width + jb)) |
             (int(last) << (p * wd.width + jb + 1)) for _, j, ws, f, last in sched]
    doc = [(f"{name}: multiply-accumulate layer {d} -> {h}, {p} multiplier(s), {e} schedule entries "
           f"({d * h - int(np.count_nonzero(w))} zero weights skipped where a whole group's are zero)"),
           f"x {xd}, w {wd}, y {to}; accumulator {aw} bits"]
    eb = bits_for(e)
    lines = ports(name, d, xd.width, h, to.width, doc)
    lines += [*_controller(0, ["RUN"], p * to.width, h * to.width),
              f"            if (state == IDLE && in_valid) begin x <= in_data; k <= {eb}'d0; state <= RUN; end",
              "            if (state == RUN) begin", f"                k <= k + {eb}'d1;",
              f"                if (last) y <= {_shift_in(p * to.width, h * to.width)};",
              f"                if (k == {lit(e - 1, eb)}) state <= DONE;", "            end",
              "        end", "    end", "",
              f"    reg [{d * xd.width - 1}:0] x;", f"    reg [{eb - 1}:0] k;", *rom("mrom", eb, word, words),
              f"    wire [{word - 1}:0] ent = mrom(k);", f"    wire [{jb - 1}:0] j = ent[{p * wd.width} +: {jb}];",
              f"    wire first = ent[{p * wd.width + jb}];", f"    wire last = ent[{p * wd.width + jb + 1}];",
              f"    wire [{xd.width - 1}:0] xj = x[j * {xd.width} +: {xd.width}];", "",
              "    genvar p;", f"    generate for (p = 0; p < {p}; p = p + 1) begin : pe",
              f"        wire signed [{pw - 1}:0] xe = {sext('xj', '0', xd.width, pw)};",
              f"        wire signed [{pw - 1}:0] we = {sext('ent', f'p * {wd.width}', wd.width, pw)};",
              f"        wire signed [{pw - 1}:0] prod = xe * we;", f"        reg signed [{aw - 1}:0] acc, nxt;",
              f"        reg [{to.width - 1}:0] yo;", "        always @* begin",
              f"            nxt = (first ? {slit(0, aw)} : acc) + {sext_expr('prod', pw, aw)};",
              *("            " + s for s in saturate("yo", "nxt", aw, to.width, a.overflow is Overflow.WRAP)),
              "        end", "        always @(posedge clk) if (state == RUN) acc <= nxt;",
              f"        assign ysat[p * {to.width} +: {to.width}] = yo;", "    end endgenerate", "endmodule", ""]
    return "\n".join(lines)


def sext_expr(v: str, w: int, to: int) -> str:
    """A whole signed signal `v` of w bits sign-extended to `to` bits."""
    return v if to == w else f"$signed({{{{{to - w}{{{v}[{w - 1}]}}}}, {v}}})"


def mp_cycles(op) -> int:
    """Cycles from taking an input to offering the output (the layer's latency)."""
    positions = math.prod(op.results[0].type.shape[2:]) if op.kind == "hw.mp_conv2d" else 1
    return positions * op.operands[1].type.shape[0] // op.attrs.parallel * (op.attrs.halvings + 2) + 1


def mac_cycles(op, graph) -> int:
    """Cycles from taking an input to offering the output."""
    return len(mac_schedule(np.asarray(graph.weights[op.operands[1].name]), op.attrs.parallel)) + 1


__all__ = ["gain_width", "mac_cycles", "mp_cycles", "render_mac", "render_mp"]
