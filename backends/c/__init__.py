"""C backend (`--emit c`): a quantized graph as C99 for hosts and microcontrollers, in OUTDIR/c/.

Files: model.c (static const weights, static buffers sized at compile time, no malloc, no libm and
no floating point: integers only), model.h (the one entry point `int mpc_run(const IN *in, OUT *out)`,
sizes and the real-value scale of input and output), main.c (raw samples on stdin, raw outputs on
stdout) and a Makefile. The graph must be fixed point (`--quantize W`): the entry takes the
stored integers of the quantized input and returns those of the requantized output, exactly what
the emulator (the interpreter's fx kernels) computes; `mpc verify --emit c` checks that bit for bit.

Lowering (`LOWERING`, ordinary passes): dead-code elimination, then `c-accumulators` (the width
of each matmul/conv running sum, an attribute the renderer reads), then `c-sparse` (pruned
matmuls and convolutions whose compressed table of non-zeros is smaller than the dense one: only
those are written and multiplied). Rendering is the per-op table in render.py (render_snn.py: the
fixed-point spiking ops; render_float.py: float graphs); an op kind without a renderer is rejected
by name. Time-major values [T, N, ...] between fx.encode and fx.decode are stored per sample as [T, ...].
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from mpc.backends.base import Backend, Emitted
from mpc.backends.c import (
    render_snn,  # noqa: F401  (registers fx.encode, fx.lif, fx.decode in RENDER)
    render_timed,  # noqa: F401  (conv/pools per time step, fx.snn_maxpool)
)
from mpc.backends.c.render import RENDER, Names, ctype
from mpc.backends.c.render_float import RENDER_FLOAT
from mpc.backends.c.resources import c_section
from mpc.backends.c.runtime import DIV_HELPER, HELPERS, MAIN_C, MAKEFILE, MP_HELPER

from mpc import __version__
from mpc.errors import UnsupportedOp
from mpc.fx.snn import time_major
from mpc.ir import Graph, Value

LOWERING = "dce,c-accumulators,c-sparse"
ALIASES = ("fx.quantize", "fx.dequantize", "nn.flatten", "nn.reshape", "nn.identity")
MP_KINDS = ("fx.mp_dot", "fx.mp_conv2d")
COUNT_SAMPLES = 256   # samples of the calibration data the emulator counts operations on at conversion
MP_FLOAT = ("mp.dot", "mp.conv2d")   # float MP layers: the C backend writes MP in integers only
NEEDS_QUANTIZE = "the c backend writes MP layers as integer MP only: add --quantize 16 (adds, compares, shifts)"
# kinds whose C reads a time-major operand stored per sample as [T, ...] (elementwise, row-wise or spiking)
TIMED_KINDS = ("fx.add", "fx.cast", "fx.decode", "fx.dequantize", "fx.lif", "fx.matmul", "fx.relu", "nn.flatten",
               "nn.identity", "nn.reshape")
TIMED_KINDS += ("fx.avgpool2d", "fx.conv2d", "fx.maxpool2d", "fx.snn_maxpool")   # per time step (render_timed)
LOCALS = ("i", "j", "h", "k", "g", "oc", "ci", "ch", "oy", "ox", "ky", "kx", "wk", "gk")


def _ident(name: str) -> str:
    return "v_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


def _boundary(graph: Graph) -> tuple[Value, Value]:
    """The quantized input (fx.quantize of the one graph input) and the output before fx.dequantize."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise UnsupportedOp("graph", graph.ops[0].loc if graph.ops else None,
                            "the C backend takes one input and one output")
    q = [op for op in graph.ops if op.kind == "fx.quantize"]
    out = graph.outputs[0].producer
    if len(q) != 1 or q[0].operands[0] is not graph.inputs[0] or out is None or out.kind != "fx.dequantize":
        first = next((op for op in graph.ops if op.kind not in RENDER), graph.ops[0] if graph.ops else None)
        kind = first.kind if first is not None else "graph"
        raise UnsupportedOp(kind, first.loc if first is not None else None,
                            "the C backend renders fixed-point graphs only (convert with --quantize W)")
    return q[0].result, out.operands[0]


def _per_sample(v: Value, timed: bool = False) -> tuple[int, ...]:
    shape = v.type.shape
    if v.is_weight:
        return tuple(shape)
    if timed:   # time-major [T, N, ...] (fx.encode to fx.decode): one sample's steps, stored as [T, ...]
        shape = shape[1:2] + shape[:1] + shape[2:]
    if not shape or not isinstance(shape[0], (int, str)) or any(not isinstance(d, int) for d in shape[1:]):
        raise UnsupportedOp(v.producer.kind if v.producer else "graph", v.producer.loc if v.producer else None,
                            f"value %{v.name} {v.type}: the C backend needs a leading batch dim and static others")
    return tuple(shape[1:])


def _names(graph: Graph, qin: Value, qout: Value) -> tuple[Names, list[str]]:
    """C expressions for every value (aliases share their operand's buffer; values whose lifetimes do not
    overlap share a buffer of their C type, see _plan) and the buffer declarations."""
    n = Names({}, {}, {})
    for w in graph.used_weights():
        v = graph.weight(w)
        n.expr[id(v)], n.ctype[id(v)], n.shape[id(v)] = "w_" + _ident(w)[2:], ctype(v.type.dtype), \
            tuple(v.type.shape)
    n.expr[id(qin)], n.shape[id(qin)] = "in", _per_sample(qin)
    timed = time_major(graph, ("fx.encode",), ("fx.decode",))
    for op in graph.ops:
        if op.kind not in TIMED_KINDS and any(id(v) in timed for v in op.operands):
            raise UnsupportedOp(op.kind, op.loc, f"the C backend takes time-major [T, N, ...] operands only in "
                                                 f"{', '.join(sorted(TIMED_KINDS))}")
        for r in op.results:
            n.shape[id(r)] = _per_sample(r, id(r) in timed)
    slot_of, slots = _plan(graph, qout, n)
    for op in graph.ops:
        for r in op.results:
            if op.kind in ALIASES + ("nn.dropout",) and op.kind != "fx.quantize":
                n.expr[id(r)] = n.expr[id(op.operands[0])]
            elif op.kind != "fx.quantize":
                n.expr[id(r)] = f"b{slot_of[id(r)]}"
    return n, [f"static {t} b{i}[{size}];" for i, (t, size) in enumerate(slots)]


def _owns_buffer(op) -> bool:
    return op.kind not in ALIASES + ("nn.dropout",)


def _last_uses(graph: Graph, qout: Value) -> dict[int, int]:
    """For each value that owns a buffer: the index of the last op reading it or one of its aliases
    (len(ops) for the output, which the entry copies out at the end)."""
    root: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, op in enumerate(graph.ops):
        for v in op.operands:
            if id(v) in root:
                last[root[id(v)]] = i
        for r in op.results:
            root[id(r)] = root.get(id(op.operands[0]), id(r)) if not _owns_buffer(op) else id(r)
    if id(qout) in root:
        last[root[id(qout)]] = len(graph.ops)
    return last


def _plan(graph: Graph, qout: Value, n: Names) -> tuple[dict[int, int], list[tuple[str, int]]]:
    """Static buffers shared by values of one C type whose lifetimes do not overlap (greedy, in op order:
    an op's result gets a free buffer of its type, never one of its own operands'; a buffer is freed
    after its value's last reader). Returns value id -> buffer index and the buffers (C type, size)."""
    last = _last_uses(graph, qout)
    slots: list[tuple[str, int]] = []
    slot_of: dict[int, int] = {}
    free: list[int] = []
    for i, op in enumerate(graph.ops):
        if not _owns_buffer(op):
            continue
        for r in op.results:
            t, size = ctype(r.type.dtype), math.prod(n.shape[id(r)])
            k = next((k for k in free if slots[k][0] == t), None)
            if k is None:
                k = len(slots)
                slots.append((t, 0))
            else:
                free.remove(k)
            slots[k] = (t, max(slots[k][1], size))
            slot_of[id(r)] = k
        done = sorted(slot_of[v] for v, j in last.items() if j == i and v in slot_of)
        done += sorted(slot_of[id(r)] for r in op.results if id(r) not in last)   # never read
        free = sorted(set(free) | set(done))
    return slot_of, slots


def _sparse_weights(graph: Graph) -> set[str]:
    """Weights read only by matmuls the c-sparse pass marked sparse: written as compressed tables only."""
    users: dict[str, list[bool]] = {}
    for op in graph.ops:
        for v in op.operands:
            if v.is_weight:
                users.setdefault(v.name, []).append(op.kind in ("fx.matmul", "fx.conv2d") and op.attrs.sparse
                                                    and v is op.operands[1])
    return {w for w, sparse in users.items() if all(sparse)}


def _csr(name: str, w: np.ndarray, t: str) -> list[str]:
    """Column pointers, row indices and values of the non-zeros of w [D, H], column by column."""
    from mpc.passes.c_sparse import index_ctype
    rows, cols = np.nonzero(w.T)   # row-major over W^T: column h of W, rows j ascending
    ptr = np.searchsorted(rows, np.arange(w.shape[1] + 1)).tolist()
    vals = [_literal(x, t) for x in w.T[rows, cols].tolist()]
    out = []
    for suffix, ct, items in (("ptr", "int32_t", [str(p) for p in ptr]),
                              ("idx", index_ctype(w.shape[0]), [str(c) for c in cols.tolist()]), ("val", t, vals)):
        body = ",\n    ".join(", ".join(items[i:i + 16]) for i in range(0, len(items), 16)) or "0"
        out.append(f"static const {ct} {name}_{suffix}[{max(1, len(items))}] = {{\n    {body}\n}};")
    return out


def _conv_table(name: str, w: np.ndarray, t: str) -> list[str]:
    """Per output channel oc of w [M, Cg, kh, kw]: pointers, and the input channel, tap row, tap column
    and value of each non-zero weight, in row-major order of (ci, ky, kx)."""
    oc, ci, ky, kx = np.nonzero(w)
    ptr = np.searchsorted(oc, np.arange(w.shape[0] + 1)).tolist()
    out = []
    for suffix, ct, items in (("ptr", "int32_t", ptr), ("ci", "uint16_t", ci.tolist()), ("ky", "uint8_t", ky.tolist()),
                              ("kx", "uint8_t", kx.tolist()), ("val", t, w[oc, ci, ky, kx].tolist())):
        vals = [_literal(x, t) if suffix == "val" else str(x) for x in items]
        body = ",\n    ".join(", ".join(vals[i:i + 16]) for i in range(0, len(vals), 16)) or "0"
        out.append(f"static const {ct} {name}_{suffix}[{max(1, len(vals))}] = {{\n    {body}\n}};")
    return out


def _weights(graph: Graph) -> list[str]:
    lines = []
    sparse = _sparse_weights(graph)
    for w in graph.used_weights():
        if w in sparse:
            table = _csr if graph.weights[w].ndim == 2 else _conv_table
            lines += table(f"w_{_ident(w)[2:]}", graph.weights[w], ctype(graph.weight(w).type.dtype))
            continue
        a = graph.weights[w].reshape(-1)
        t = ctype(graph.weight(w).type.dtype)
        vals = [_literal(x, t) for x in a.tolist()]
        rows = [", ".join(vals[i:i + 16]) for i in range(0, len(vals), 16)]
        body = ",\n    ".join(rows) if rows else "0"
        lines.append(f"static const {t} w_{_ident(w)[2:]}[{max(1, a.size)}] = {{\n    {body}\n}};")
    return lines


def _literal(x, t: str) -> str:
    if t in ("float", "double"):
        if not np.isfinite(x):
            raise UnsupportedOp("weight", None, f"the C backend cannot write the non-finite weight value {x!r}")
        return f"{float(x)!r}f" if t == "float" else repr(float(x))
    return f"INT64_C({int(x)})" if t == "int64_t" else str(int(x))


def _float_boundary(graph: Graph) -> tuple[Value, Value]:
    """The one f32 input and output of a float graph."""
    ok = len(graph.inputs) == 1 and len(graph.outputs) == 1
    if not ok or any(v.type.dtype.kind != "f" or v.type.dtype.width != 32 for v in graph.inputs + graph.outputs):
        raise UnsupportedOp("graph", graph.ops[0].loc if graph.ops else None,
                            "the C backend takes one input and one output (f32 for float graphs)")
    return graph.inputs[0], graph.outputs[0]


def _check_table(graph: Graph, fixed: bool) -> dict:
    table = RENDER if fixed else RENDER_FLOAT
    for op in graph.ops:
        if op.kind in MP_FLOAT and not fixed:
            raise UnsupportedOp(op.kind, op.loc, NEEDS_QUANTIZE)
        if op.kind not in table:
            hint = "" if fixed else " in float graphs (convert with --quantize W for fixed-point C)"
            raise UnsupportedOp(op.kind, op.loc, f"the C backend has no rendering for this op kind{hint}")
    return table


def _scratch(graph: Graph) -> list[str]:
    depth = [math.prod(op.operands[1].type.shape[1:]) for op in graph.ops if op.kind in MP_KINDS]
    if not depth:
        return []
    d = max(depth)
    conv = any(op.kind == "fx.mp_conv2d" for op in graph.ops)
    return [f"static int64_t mp_a[{d}], mp_b[{d}]{f', mp_x[{d}]' if conv else ''};"]


def render_c(graph: Graph) -> tuple[str, str, str, str]:
    """(model.c, model.h, main.c, in/out C types) of a lowered graph: fixed point, or float without fx ops."""
    fixed = any(op.kind.startswith("fx.") for op in graph.ops)
    table = _check_table(graph, fixed)
    qin, qout = _boundary(graph) if fixed else _float_boundary(graph)
    n, decls = _names(graph, qin, qout)
    body = [line for op in graph.ops for line in table[op.kind](op, n)]
    in_t, out_t = ctype(qin.type.dtype), ctype(qout.type.dtype)
    size_in, size_out = math.prod(n.shape[id(qin)]), math.prod(n.shape[id(qout)])
    body.append(f"    for (i = 0; i < {size_out}; i++)")
    body.append(f"        out[i] = {n.of(qout)}[i];")
    text = "\n".join(body)
    used = [v for v in LOCALS if re.search(rf"\b{v}\b", text)]
    local = ([f"    int {', '.join(used)};"] if used else []) + \
        (["    int64_t d, y;"] if re.search(r"\bd = ", text) else [])
    mp = any(op.kind in MP_KINDS for op in graph.ops)
    div = "mpc_div_round(" in text   # only where a mean divides: an unused static function is an error
    what = "integer arithmetic only" if fixed else "float arithmetic"
    includes = ["#include <stdint.h>"] + ([] if fixed else ["#include <float.h>"])
    c = "\n".join([f"/* {graph.name}: generated by mpc {__version__}; {what} (C99). */",
                   *includes, '#include "model.h"', "", (HELPERS + (MP_HELPER if mp else "") + (DIV_HELPER if div else "")) if fixed else "",
                   *_weights(graph), "", *decls, *_scratch(graph), "",
                   f"int mpc_run(const {in_t} *in, {out_t} *out)", "{", *local, text, "    return 0;", "}", ""])
    h = _header(graph, qin, qout, in_t, out_t, size_in, size_out)
    return c, h, MAIN_C.format(in_t=in_t, out_t=out_t), f"{in_t} {out_t}"


def _header(graph: Graph, qin: Value, qout: Value, in_t: str, out_t: str, size_in: int, size_out: int) -> str:
    fi, fo = qin.type.dtype, qout.type.dtype
    guard = "MPC_MODEL_H"
    scale = [f"#define MPC_IN_FRAC {fi.frac}     /* input: {fi}, real value = in[i] / 2^{fi.frac} */",
             f"#define MPC_OUT_FRAC {fo.frac}    /* output: {fo}, real value = out[i] / 2^{fo.frac} */"] \
        if fi.is_fixed else ["/* float model: inputs and outputs are f32 values */"]
    return "\n".join([
        (f"/* {graph.name}: one inference of the {'fixed-point' if fi.is_fixed else 'float'} model "
        f"(generated by mpc {__version__}). */"),
        f"#ifndef {guard}", f"#define {guard}", "#include <stdint.h>", "",
        f"#define MPC_IN_SIZE {size_in}    /* %{graph.inputs[0].name} {list(qin.type.shape[1:])} */",
        f"#define MPC_OUT_SIZE {size_out}  /* %{graph.outputs[0].name} {list(qout.type.shape[1:])} */",
        *scale, "",
        "/* Runs one sample: `in` holds MPC_IN_SIZE input values (for fixed point the stored integers of the",
        "   quantized input; row-major, no batch dim), `out` receives MPC_OUT_SIZE output values. Returns 0.",
        "   Not reentrant: intermediate values live in static buffers. */",
        f"int mpc_run(const {in_t} *in, {out_t} *out);", "", f"#endif /* {guard} */", ""])


def write(graph: Graph, folder: Path, target: str = "float") -> Emitted:
    """Write c/model.c, c/model.h, c/main.c and c/Makefile for a lowered fixed-point graph."""
    c, h, main, _ = render_c(graph)
    out = Path(folder) / "c"
    out.mkdir(parents=True, exist_ok=True)
    files = {"model.c": c, "model.h": h, "main.c": main, "Makefile": MAKEFILE}
    for name, text in files.items():
        (out / name).write_text(text)
    return Emitted(tuple(f"c/{f}" for f in sorted(files)), {"c": c_section(graph, c, h)})


def with_counted_ops(emitted: Emitted, graph: Graph, data) -> Emitted:
    """`emitted` with section `c`'s operation counts counted by the emulator on `data` (the converted
    graph lowered again: the same lowering the files came from), on at most COUNT_SAMPLES samples."""
    from dataclasses import replace

    from mpc.backends.base import lower
    from mpc.backends.c.resources import counted_ops

    from mpc.data import Dataset
    if data.batched and data.size > COUNT_SAMPLES:   # the head of the data: counting runs the emulator
        data = Dataset({k: v[:COUNT_SAMPLES] for k, v in data.feeds.items()}, None, data.source)
    counted = counted_ops(lower(BACKEND, graph)[0], data)
    if not counted:
        return emitted
    sections = dict(emitted.report_sections)
    sections["c"] = {**sections["c"], **counted}
    return replace(emitted, report_sections=sections)


def _needs_quantize(op, n: Names) -> list[str]:
    """Float MP layers reach `write`, which rejects them with NEEDS_QUANTIZE (see _check_table)."""
    raise UnsupportedOp(op.kind, op.loc, NEEDS_QUANTIZE)


BACKEND = Backend("c", LOWERING, {**RENDER_FLOAT, **RENDER, **dict.fromkeys(MP_FLOAT, _needs_quantize)}, write)
