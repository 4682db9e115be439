"""The C report section: operations per inference by kind and static memory of the emitted C.

For fixed-point graphs the operation counts are counted by the emulator (mpc.fx.count) on data:
`with_counted_ops` replaces them with the mean and the maximum per inference over the samples
(`ops_source` says which samples). Without data (and for float C), they follow the loops the
renderers emit, op by op, for one sample: `add` (adds and subtracts), `compare` (compares, max,
abs, saturation), `shift`, `multiply`, `divide`. Data-dependent branches (a bisection step adds
[u - α]_+ only where positive) are then counted as if taken, so the numbers are upper bounds;
divide is always 0 (every division is a shift), and multiply is 0 in MP layers by construction. Sizes come from compiling model.c alone with the host gcc and with
arm-none-eabi-gcc when they are installed (otherwise the section says which tool was missing).
"""
from __future__ import annotations

import math
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from mpc.fx import arith as A
from mpc.ir import Graph, Op

KINDS = ("add", "compare", "shift", "multiply", "divide")


def _sample(op: Op, i: int = 0) -> tuple[int, ...]:
    shape = op.results[i].type.shape
    if len(shape) > 1 and isinstance(shape[0], int) and isinstance(shape[1], str):   # time-major [T, N, ...]
        return (shape[0],) + tuple(shape[2:])
    return tuple(shape[1:])


def _taps(op: Op, kernel, cin: int) -> int:
    """Window taps that fall inside the input, summed over output positions (one channel)."""
    a = op.attrs
    hh, ww = op.operands[0].type.shape[-2:]
    ones = np.ones((1, 1, hh, ww), np.int64)
    pads = a.pads
    dil = getattr(a, "dilations", (1, 1))
    k = np.ones((1, 1) + tuple(kernel), np.int64)
    return int(A.conv2d(ones, k, a.strides, pads, dil, 1).sum()) * cin


def _mp_counts(op: Op, rows: int, h: int, d: int, terms: int) -> Counter:
    """One MP layer: |x ± w| (2 adds, 2 abs per term), two thresholds, the shift-add gain."""
    k = op.attrs.gamma.bit_length()
    per_alpha = Counter(compare=d - 1 + k * (3 * d + 1), add=1 + k * (2 + 4 * d), shift=k)   # t > 0 twice, f < γ
    c = Counter(add=2 * d + 1 + terms, compare=2 * d + 2, shift=2 * d + terms)
    for key, v in per_alpha.items():
        c[key] += 2 * v
    return Counter({key: v * rows * h for key, v in c.items()})


FLOAT_AS = {"nn.matmul": "fx.matmul", "nn.conv2d": "fx.conv2d", "nn.relu": "fx.relu", "nn.maxpool2d": "fx.maxpool2d"}


def op_counts(op: Op) -> Counter:
    """Operations one sample costs in the C of `op` (see the module docstring); float ops count alike,
    without the saturation compares of fixed point."""
    n = math.prod(_sample(op)) if op.results[0].type.rank else 1
    if op.kind in ("nn.add", "nn.sub"):
        return Counter(add=n)
    if op.kind == "nn.mul":
        return Counter(multiply=n)
    if op.kind in FLOAT_AS:
        c = _counts(op, FLOAT_AS[op.kind], n)
        if op.kind in ("nn.matmul", "nn.conv2d"):   # no saturation in float
            c.pop("compare", None)
        return c
    return _counts(op, op.kind, n)


def _counts(op: Op, kind: str, n: int) -> Counter:
    if kind in ("fx.quantize", "fx.dequantize", "nn.flatten", "nn.reshape", "nn.identity"):
        return Counter()
    if kind in ("fx.cast", "fx.add"):
        return Counter(shift=n * (2 if kind == "fx.add" else 1), add=n * (1 if kind == "fx.add" else 0), compare=2 * n)
    if kind == "fx.relu":
        return Counter(compare=n)
    if kind == "fx.matmul":
        d, h = op.operands[1].type.shape
        rows = n // h   # more than one per sample for time-major spikes [T, N, D]
        return Counter(multiply=rows * d * h, add=rows * d * h, compare=2 * rows * h)
    if kind in ("fx.encode", "fx.lif", "fx.decode"):
        return _spiking_counts(op, kind, n)
    if kind in ("fx.conv2d", "fx.mp_conv2d"):
        m, cg, kh, kw = op.operands[1].type.shape
        taps = _taps(op, (kh, kw), cg)
        if kind == "fx.conv2d":
            return Counter(multiply=taps * m, add=taps * m, compare=2 * n)
        rows = _sample(op)[1] * _sample(op)[2]
        return _mp_counts(op, rows, m, cg * kh * kw, op.operands[2].type.shape[1])
    if kind == "fx.mp_dot":
        h, d = op.operands[1].type.shape
        return _mp_counts(op, 1, h, d, op.operands[2].type.shape[1])
    if kind in ("fx.maxpool2d", "fx.avgpool2d"):
        taps = _taps(op, op.attrs.kernel, _sample(op)[0])
        if kind == "fx.maxpool2d":
            return Counter(compare=taps)
        area = op.attrs.kernel[0] * op.attrs.kernel[1]
        return Counter(add=taps, shift=n, compare=2 * n) + (Counter(divide=n, add=2 * n) if area & (area - 1)
                                                              else Counter())
    return Counter()


def _spiking_counts(op: Op, kind: str, n: int) -> Counter:
    """fx.lif per unit and step, every branch taken: refractory test, add of x, overflow (2) and threshold
    compares, the leak (multiply, shift, rounding add) unless beta is 1, the soft reset's subtract."""
    if kind == "fx.encode":
        return Counter()
    if kind == "fx.decode":
        return Counter(add=math.prod(_sample(op)) * op.operands[0].type.shape[0], compare=2 * n)
    a = op.attrs
    leak = a.beta != 1 << a.beta_frac
    return Counter(compare=4 * n, add=n * (1 + int(a.reset.value == "soft") + int(leak and a.beta_frac > 0)),
                   multiply=n * int(leak), shift=n * int(leak and a.beta_frac > 0))


def counts_table(graph: Graph) -> tuple[list[dict], dict[str, int]]:
    """Per-op rows (op, kind, counts) and the totals per kind, for one inference."""
    rows, total = [], Counter()
    for op in graph.ops:
        c = op_counts(op)
        if c:
            rows.append({"op": op.kind, "result": op.results[0].name, **{k: int(c.get(k, 0)) for k in KINDS}})
            total.update(c)
    return rows, {k: int(total.get(k, 0)) for k in KINDS}


def _sizes(c: str, h: str) -> dict:
    from mpc.backends.c.build import BuildError, ToolMissing, model_object_sizes
    out = {}
    with tempfile.TemporaryDirectory(prefix="mpc-c-") as tmp:
        d = Path(tmp)
        (d / "model.c").write_text(c)
        (d / "model.h").write_text(h)
        for key, arm in (("host", False), ("cortex_m4", True)):
            try:
                out[key] = model_object_sizes(d, d, arm)
            except (ToolMissing, BuildError) as e:
                out[key] = {"not_measured": str(e)}
    return out


def c_section(graph: Graph, c: str, h: str) -> dict:
    """report.json section `c` for `graph` rendered as model.c `c` and model.h `h`: sizes (host,
    Cortex-M4), op counts per inference, MP layers' multiplies."""
    rows, total = counts_table(graph)
    mp_mults = sum(r["multiply"] + r["divide"] for r in rows if r["op"] in ("fx.mp_dot", "fx.mp_conv2d"))
    return {"sizes": _sizes(c, h), "ops_per_inference": total, "ops_by_layer": rows,
            "mp_layer_multiplies_and_divides": mp_mults, "ops_source": "static: the C loops, branches as if taken"}


def counted_ops(graph: Graph, data) -> dict:
    """The op-count fields of section `c` counted by the emulator on `data` (empty for float graphs)."""
    from mpc.fx.count import count_ops, summary
    counted = summary(graph, count_ops(graph, data))
    if counted:
        counted["ops_source"] = f"counted by the emulator: mean and max over {counted.pop('ops_samples')} " \
            f"samples of {data.source}"
    return counted
