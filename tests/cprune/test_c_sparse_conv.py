"""Pruned fixed-point convolutions in the C backend: only non-zero weights are written (per output
channel: input channel, tap row and column, value) and multiplied; outputs stay bit-exact with the
emulator (gcc with ASan/UBSan); the emulator counts exactly the products of non-zero in-bounds taps."""
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

GRAPH = """graph @conv(%x: f32[N,4,7,6]) -> (%y: f32[N,6,{oh},{ow}]) {{
  weight @k : fx<8,6>[6,{cg},3,3]
  %0 = fx.quantize(%x) {{to = "fx<10,4>"}} : fx<10,4>[N,4,7,6]
  %1 = fx.conv2d(%0, @k) {{to = "fx<24,10>", strides = [{s}, 1], pads = [1, 0, 2, 1], dilations = [1, {dil}], group = {g}}} : fx<24,10>[N,6,{oh},{ow}]
  %2 = fx.cast(%1) {{to = "fx<12,4>", overflow = wrap}} : fx<12,4>[N,6,{oh},{ow}]
  %y = fx.dequantize(%2) : f32[N,6,{oh},{ow}]
}}
"""

CASES = [{"g": 1, "s": 1, "dil": 1, "oh": 8, "ow": 5}, {"g": 2, "s": 2, "dil": 2, "oh": 4, "ow": 3}]


def _pruned(rng, shape, density: float) -> np.ndarray:
    w = rng.integers(-128, 128, shape).astype(np.int8)
    w[rng.random(shape) >= density] = 0
    w[1] = 0                    # an output channel without weights: an empty range
    w[0, 0, 0, 0] = -128        # the most negative weight
    return w


def _table(c: str, name: str) -> list[int]:
    m = re.search(rf"static const \w+ {name}\[\d+\] = {{(.*?)}};", c, re.DOTALL)
    assert m, name
    return [int(v) for v in m.group(1).replace("\n", " ").split(",")]


def _products(w: np.ndarray, case: dict) -> int:
    """Non-zero weights times the output positions where their tap lies inside the 7x6 input (loops)."""
    total = 0
    for oc, ci, ky, kx in zip(*np.nonzero(w)):
        for oy in range(case["oh"]):
            for ox in range(case["ow"]):
                iy, ix = oy * case["s"] - 1 + ky, ox - 0 + kx * case["dil"]
                total += 0 <= iy < 7 and 0 <= ix < 6
    return total


@pytest.mark.parametrize("case", CASES)
def test_sparse_conv_bit_exact_compact_and_counted(tmp_path, case):
    rng = np.random.default_rng(case["g"])
    w = _pruned(rng, (6, 4 // case["g"], 3, 3), 0.12)
    g, _ = lower(BACKEND, parse(GRAPH.format(cg=4 // case["g"], **case), {"k": w}))
    conv = next(op for op in g.ops if op.kind == "fx.conv2d")
    assert conv.attrs.sparse
    x = rng.uniform(-40, 40, (48, 4, 7, 6)).astype(np.float32)
    qin, qout = emulator_io(g, Dataset({"x": x}, None, "test"))
    c, hdr, main, _ = render_c(g)
    for name, body in (("model.c", c), ("model.h", hdr), ("main.c", main)):
        (tmp_path / name).write_text(body)
    exe = compile_host(tmp_path, tmp_path / "model", SANITIZE)
    got = np.frombuffer(run_host(exe, np.ascontiguousarray(qin).tobytes()), dtype=qout.dtype)
    np.testing.assert_array_equal(got, qout.reshape(-1))
    assert not re.search(r"static const \w+ w_k\[", c)   # no dense table
    ptr, vals = _table(c, "w_k_ptr"), _table(c, "w_k_val")
    ci, ky, kx = _table(c, "w_k_ci"), _table(c, "w_k_ky"), _table(c, "w_k_kx")
    assert len(vals) == np.count_nonzero(w) and 0 not in vals
    rebuilt = np.zeros(w.shape, np.int64)
    for oc in range(6):
        for k in range(ptr[oc], ptr[oc + 1]):
            rebuilt[oc, ci[k], ky[k], kx[k]] = vals[k]
    np.testing.assert_array_equal(rebuilt, w)
    counts = count_ops(g, Dataset({"x": x[:5]}, None, "t"))[conv.results[0].name]
    np.testing.assert_array_equal(counts["multiply"], [_products(w, case)] * 5)


def test_dense_enough_conv_stays_dense():
    rng = np.random.default_rng(9)
    w = _pruned(rng, (6, 4, 3, 3), 0.6)
    g, _ = lower(BACKEND, parse(GRAPH.format(cg=4, **CASES[0]), {"k": w}))
    assert not next(op for op in g.ops if op.kind == "fx.conv2d").attrs.sparse
    c = render_c(g)[0]
    assert len(_table(c, "w_k")) == w.size and "w_k_val" not in c
