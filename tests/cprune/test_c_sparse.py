"""Pruned fixed-point matmuls in the C backend: only non-zero weights are written and multiplied, the
outputs stay bit-exact with the emulator (gcc with ASan/UBSan), and the op counts count non-zeros."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from mpc.backends.base import lower
from mpc.backends.c import BACKEND, render_c
from mpc.backends.c.build import SANITIZE, compile_host, run_host

from mpc.data import Dataset
from mpc.driver.verify_fx import emulator_io
from mpc.fx.count import count_ops
from mpc.ir import parse

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs the host gcc")

GRAPH = """graph @dense(%x: f32[N,{d}]) -> (%y: f32[N,{h}]) {{
  weight @w : fx<8,6>[{d},{h}]
  %0 = fx.quantize(%x) {{to = "fx<8,4>"}} : fx<8,4>[N,{d}]
  %1 = fx.matmul(%0, @w) {{to = "fx<24,10>"}} : fx<24,10>[N,{h}]
  %2 = fx.relu(%1) : fx<24,10>[N,{h}]
  %3 = fx.cast(%2) {{to = "fx<12,4>", rounding = nearest}} : fx<12,4>[N,{h}]
  %y = fx.dequantize(%3) : f32[N,{h}]
}}
"""


def _pruned(rng, d: int, h: int, density: float) -> np.ndarray:
    w = rng.integers(-128, 128, (d, h)).astype(np.int8)
    w[rng.random((d, h)) >= density] = 0
    w[:, 0] = 0   # an all-zero column: an empty row range
    return w


def _table(c: str, name: str) -> list[int]:
    """The integers of one `static const` table of model.c."""
    m = re.search(rf"static const \w+ {name}\[\d+\] = {{(.*?)}};", c, re.DOTALL)
    assert m, name
    return [int(v) for v in m.group(1).replace("\n", " ").split(",")]


@pytest.mark.parametrize("density, sparse", [(0.2, True), (0.9, False)])
def test_sparse_matmul_bit_exact_and_compact(tmp_path, density, sparse):
    rng = np.random.default_rng(7)
    d, h = 45, 13
    w = _pruned(rng, d, h, density)
    g, _ = lower(BACKEND, parse(GRAPH.format(d=d, h=h), {"w": w}))
    assert g.ops[1].attrs.sparse is sparse
    x = rng.uniform(-8, 8, (64, d)).astype(np.float32)
    qin, qout = emulator_io(g, Dataset({"x": x}, None, "test"))
    c, hdr, main, _ = render_c(g)
    for name, body in (("model.c", c), ("model.h", hdr), ("main.c", main)):
        (tmp_path / name).write_text(body)
    exe = compile_host(tmp_path, tmp_path / "model", SANITIZE)
    got = np.frombuffer(run_host(exe, np.ascontiguousarray(qin).tobytes()), dtype=qout.dtype)
    np.testing.assert_array_equal(got, qout.reshape(-1))
    # independent float64 reference: x·W exact in float64, relu, rescale by 2^-6 to fx<12,4>, saturate
    ref = np.clip(np.maximum(qin.astype(np.float64) @ w.astype(np.float64), 0) / 2 ** 6, -2048, 2047)
    assert np.abs(qout.reshape(ref.shape) - ref).max() <= 0.5
    if not sparse:
        assert "w_w_val" not in c and len(_table(c, "w_w")) == d * h
        return
    vals = _table(c, "w_w_val")
    assert len(vals) == np.count_nonzero(w) and 0 not in vals
    assert not re.search(r"static const \w+ w_w\[", c)   # no dense table
    ptr, idx = _table(c, "w_w_ptr"), _table(c, "w_w_idx")
    rebuilt = np.zeros((d, h), np.int64)
    for col in range(h):
        rebuilt[idx[ptr[col]:ptr[col + 1]], col] = vals[ptr[col]:ptr[col + 1]]
    np.testing.assert_array_equal(rebuilt, w)


def test_sparse_counts_only_non_zero_terms():
    rng = np.random.default_rng(3)
    d, h, n = 40, 9, 5
    w = _pruned(rng, d, h, 0.15)
    g, _ = lower(BACKEND, parse(GRAPH.format(d=d, h=h), {"w": w}))
    assert g.ops[1].attrs.sparse
    counts = count_ops(g, Dataset({"x": rng.uniform(-1, 1, (n, d)).astype(np.float32)}, None, "t"))
    mm = counts[g.ops[1].results[0].name]
    nnz = sum(1 for j in range(d) for k in range(h) if int(w[j, k]) != 0)
    np.testing.assert_array_equal(mm["multiply"], [nnz] * n)
    np.testing.assert_array_equal(mm["add"], [nnz] * n)
