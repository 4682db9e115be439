"""Static RAM of the emitted C: values whose lifetimes do not overlap share one static buffer of their C
type. Checked on a graph with a long-lived value (a residual) and a reshape alias: no two values that are
alive at once share a buffer (lifetimes computed here from the graph), and the C stays bit-exact with
the emulator under ASan/UBSan."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from fx.test_c_backend import check_c  # tests/ is on sys.path (CI runs plain pytest)
from mpc.backends.c import _boundary, _names

from mpc.ir import parse

RESIDUAL = """graph @res(%x: f32[N,12]) -> (%y: f32[N,12]) {
  weight @w1 : fx<8,6>[12,12]
  weight @w2 : fx<8,6>[12,12]
  %0 = fx.quantize(%x) {to = "fx<10,5>"} : fx<10,5>[N,12]
  %1 = fx.matmul(%0, @w1) {to = "fx<24,11>"} : fx<24,11>[N,12]
  %2 = fx.cast(%1) {to = "fx<10,5>"} : fx<10,5>[N,12]
  %3 = fx.relu(%2) : fx<10,5>[N,12]
  %4 = fx.matmul(%3, @w2) {to = "fx<24,11>"} : fx<24,11>[N,12]
  %5 = fx.cast(%4) {to = "fx<10,5>"} : fx<10,5>[N,12]
  %6 = nn.reshape(%5) {shape = [-1, 3, 4]} : fx<10,5>[N,3,4]
  %7 = nn.reshape(%6) {shape = [-1, 12]} : fx<10,5>[N,12]
  %8 = fx.relu(%7) : fx<10,5>[N,12]
  %9 = fx.add(%8, %2) {to = "fx<11,5>"} : fx<11,5>[N,12]
  %10 = fx.matmul(%9, @w1) {to = "fx<24,11>"} : fx<24,11>[N,12]
  %11 = fx.cast(%10) {to = "fx<10,5>"} : fx<10,5>[N,12]
  %y = fx.dequantize(%11) : f32[N,12]
}
"""


def _weights(rng):
    return {"w1": rng.integers(-128, 128, (12, 12)).astype(np.int8), "w2": rng.integers(-128, 128, (12, 12)).astype(np.int8)}


def _lifetimes(g) -> dict[str, tuple[int, int]]:
    """Value name -> (defining op, last op reading it or an alias of it); the output lives to the end."""
    alias = {"nn.reshape", "fx.dequantize", "fx.quantize"}
    owner, span = {}, {}
    for i, op in enumerate(g.ops):
        for v in op.operands:
            if v.name in owner:
                o = owner[v.name]
                span[o] = (span[o][0], i)
        r = op.results[0].name
        owner[r] = owner.get(op.operands[0].name, r) if op.kind in alias else r
        if owner[r] == r:
            span[r] = (i, i)
    span[owner[g.ops[-1].operands[0].name]] = (span[owner[g.ops[-1].operands[0].name]][0], len(g.ops))
    return span


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs the host gcc")
def test_shared_buffers_never_overlap_and_c_is_bit_exact(tmp_path):
    rng = np.random.default_rng(2)
    g = parse(RESIDUAL, _weights(rng))
    check_c(RESIDUAL, _weights(np.random.default_rng(2)), rng.uniform(-16, 16, (200, 12)).astype(np.float32),
            tmp_path)
    qin, qout = _boundary(g)
    n, decls = _names(g, qin, qout)
    span = _lifetimes(g)
    by_buffer: dict[str, list[str]] = {}
    for op in g.ops:
        r = op.results[0]
        if r.name in span and op.kind != "fx.quantize":
            by_buffer.setdefault(n.of(r), []).append(r.name)
    for names in by_buffer.values():
        for a in names:
            for b in names:
                if a < b:   # [def, last use] intervals of values sharing a buffer are disjoint (strictly: an op
                    # never writes its result over an operand)
                    assert span[a][1] < span[b][0] or span[b][1] < span[a][0], (a, b, span[a], span[b])
    assert len(decls) < sum(1 for op in g.ops if op.results[0].name in span and op.kind != "fx.quantize")
    sizes = {d: int(re.search(r"\[(\d+)\]", d).group(1)) for d in decls}
    assert all(s == 12 for s in sizes.values())
