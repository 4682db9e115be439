"""Fixed-point spiking convolutions: fx.snn_maxpool against a plain-Python reference of its leader rule
written here, and the C of time-major fx.conv2d / fx.avgpool2d / fx.maxpool2d / fx.snn_maxpool against
the emulator bit for bit (gcc -Werror with address and undefined-behaviour sanitizers)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from fx.test_c_backend import check_c  # tests/ is on sys.path (CI runs plain pytest)

from mpc.errors import MPCError
from mpc.ir import apply, parse, print_graph

GCC = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs the host gcc")


def ref_pool(x, kernel, strides):
    """Spiking max-pool of one map x[t][i][j] (Python lists): each window's leader is the unit with the
    most non-zero steps so far; another unit takes the lead only with a strictly higher count (the
    first such in row-major order at the highest count); it starts as the window's first unit.
    Returns the output [t][oi][oj] and the number of ties seen (a non-leader level with the leader)."""
    steps, h, w = len(x), len(x[0]), len(x[0][0])
    oh, ow = (h - kernel[0]) // strides[0] + 1, (w - kernel[1]) // strides[1] + 1
    count = [[0] * w for _ in range(h)]
    lead = {(i, j): (i * strides[0], j * strides[1]) for i in range(oh) for j in range(ow)}
    out, ties = [], 0
    for t in range(steps):
        for i in range(h):
            for j in range(w):
                count[i][j] += x[t][i][j] != 0
        frame = [[0] * ow for _ in range(oh)]
        for (i, j), (bi, bj) in sorted(lead.items()):
            cells = [(i * strides[0] + a, j * strides[1] + b) for a in range(kernel[0]) for b in range(kernel[1])]
            best = max(count[a][b] for a, b in cells)
            if best > count[bi][bj]:
                bi, bj = next((a, b) for a, b in cells if count[a][b] == best)
            ties += sum(count[a][b] == count[bi][bj] and (a, b) != (bi, bj) and x[t][a][b] != x[t][bi][bj]
                        for a, b in cells)
            lead[(i, j)] = (bi, bj)
            frame[i][j] = x[t][bi][bj]
        out.append(frame)
    return out, ties


POOL = """graph @g(%x: fx<2,0>[{t},2,3,{h},{w}]) -> (%y: fx<2,0>[{t},2,3,{oh},{ow}]) {{
  %y = fx.snn_maxpool(%x) {{kernel = [{k0}, {k1}], strides = [{s0}, {s1}]}} : fx<2,0>[{t},2,3,{oh},{ow}]
}}
"""


@pytest.mark.parametrize("kernel, strides, hw", [((2, 2), (2, 2), (6, 6)), ((3, 2), (1, 2), (5, 7)),
                                                 ((2, 3), (1, 1), (4, 5))])
def test_snn_maxpool_matches_the_rule(kernel, strides, hw):
    rng = np.random.default_rng(sum(kernel) * 10 + strides[0])
    steps, (h, w) = 10, hw
    oh, ow = (h - kernel[0]) // strides[0] + 1, (w - kernel[1]) // strides[1] + 1
    text = POOL.format(t=steps, h=h, w=w, oh=oh, ow=ow, k0=kernel[0], k1=kernel[1], s0=strides[0], s1=strides[1])
    g = parse(text, {})
    x = (rng.random((steps, 2, 3, h, w)) < 0.3).astype(np.int8)
    got = apply(g.ops[0], [x])[0]
    assert got.dtype == np.int8 and got.shape == (steps, 2, 3, oh, ow)
    ties = 0
    for n in range(2):
        for c in range(3):
            want, k = ref_pool(x[:, n, c].tolist(), kernel, strides)
            ties += k
            assert got[:, n, c].tolist() == want, (n, c)
    assert ties > 0   # the data exercised the rule that ties keep the leader
    once = print_graph(g)
    assert print_graph(parse(once, {})) == once


def test_snn_maxpool_type_errors():
    text = POOL.format(t=4, h=3, w=3, oh=2, ow=2, k0=4, k1=2, s0=1, s1=1)
    with pytest.raises(MPCError, match="must be static and >= kernel"):
        parse(text, {})


CONV = """graph @g(%x: f32[N,2,6,6]) -> (%y: f32[N,3,3,3]) {
  weight @k : fx<8,3>[3,2,3,3]
  weight @th : fx<10,4>[3]
  weight @u0 : fx<10,4>[3]
  %0 = fx.quantize(%x) {to = "fx<8,4>"} : fx<8,4>[N,2,6,6]
  %1 = fx.encode(%0) {timesteps = 8} : fx<8,4>[8,N,2,6,6]
  %2 = fx.conv2d(%1, @k) {to = "fx<24,7>", pads = [1, 1, 1, 1]} : fx<24,7>[8,N,3,6,6]
  %3 = fx.cast(%2) {to = "fx<10,4>", overflow = wrap} : fx<10,4>[8,N,3,6,6]
  %4 = fx.lif(%3, @th, @u0) {mem_bits = 16} : fx<2,0>[8,N,3,6,6]
  %5 = fx.snn_maxpool(%4) {kernel = [2, 2], strides = [2, 2]} : fx<2,0>[8,N,3,3,3]
  %6 = fx.decode(%5) {to = "fx<6,0>", mode = sum} : fx<6,0>[N,3,3,3]
  %y = fx.dequantize(%6) : f32[N,3,3,3]
}
"""

SPIKE_CONV = """graph @g(%x: f32[N,2,5,7]) -> (%y: f32[N,4,2,2]) {
  weight @th : fx<8,4>[1]
  weight @u0 : fx<8,4>[1]
  weight @k : fx<8,5>[4,2,2,2]
  %0 = fx.quantize(%x) {to = "fx<8,4>"} : fx<8,4>[N,2,5,7]
  %1 = fx.encode(%0) {timesteps = 16} : fx<8,4>[16,N,2,5,7]
  %2 = fx.lif(%1, @th, @u0) {mem_bits = 14} : fx<2,0>[16,N,2,5,7]
  %3 = fx.snn_maxpool(%2) {kernel = [3, 2], strides = [1, 2]} : fx<2,0>[16,N,2,3,3]
  %4 = fx.conv2d(%3, @k) {to = "fx<13,5>", strides = [2, 2], pads = [0, 0, 1, 1]} : fx<13,5>[16,N,4,2,2]
  %5 = fx.decode(%4) {to = "fx<17,9>"} : fx<17,9>[N,4,2,2]
  %6 = fx.cast(%5) {to = "fx<16,7>"} : fx<16,7>[N,4,2,2]
  %y = fx.dequantize(%6) : f32[N,4,2,2]
}
"""

POOLS = """graph @g(%x: f32[N,2,6,6]) -> (%y: f32[N,2,3,3]) {
  %0 = fx.quantize(%x) {to = "fx<8,4>"} : fx<8,4>[N,2,6,6]
  %1 = fx.encode(%0) {timesteps = 4} : fx<8,4>[4,N,2,6,6]
  %2 = fx.avgpool2d(%1) {kernel = [3, 3], to = "fx<8,4>", pads = [1, 1, 1, 1]} : fx<8,4>[4,N,2,6,6]
  %3 = fx.avgpool2d(%2) {kernel = [2, 2], to = "fx<8,5>", strides = [2, 2], rounding = floor} : fx<8,5>[4,N,2,3,3]
  %4 = fx.maxpool2d(%2) {kernel = [2, 2], strides = [2, 2]} : fx<8,4>[4,N,2,3,3]
  %5 = fx.add(%3, %4) {to = "fx<10,5>"} : fx<10,5>[4,N,2,3,3]
  %6 = fx.decode(%5) {to = "fx<12,7>"} : fx<12,7>[N,2,3,3]
  %y = fx.dequantize(%6) : f32[N,2,3,3]
}
"""


@GCC
def test_time_major_conv_lif_and_spiking_pool_in_c(tmp_path):
    """Conv per step on a constant current, wrap to 10 bits, per-channel LIF, spiking max-pool, count."""
    rng = np.random.default_rng(5)
    w = {"k": rng.integers(-128, 128, (3, 2, 3, 3)).astype(np.int8),
         "th": rng.integers(20, 200, 3).astype(np.int16), "u0": rng.integers(-10, 100, 3).astype(np.int16)}
    x = rng.uniform(-8, 8, (40, 2, 6, 6)).astype(np.float32)
    x[0] = -8.0   # the most negative input everywhere
    q = check_c(CONV, w, x, tmp_path)
    assert len(np.unique(q)) > 4   # the counts vary: spikes passed the pool


@GCC
def test_spiking_pool_ties_then_conv_on_spikes_in_c(tmp_path):
    """Overlapping pool windows on the same constant-current spike trains (ties in the counts), then a
    strided, padded conv on the pooled spikes and the mean readout."""
    rng = np.random.default_rng(6)
    w = {"th": np.array([40], np.int8), "u0": np.array([0], np.int8),
         "k": rng.integers(-128, 128, (4, 2, 2, 2)).astype(np.int8)}
    x = rng.choice([0.0, 0.625, 0.9375, 1.25, 1.875, 2.5], (60, 2, 5, 7)).astype(np.float32)   # few rates: ties
    q = check_c(SPIKE_CONV, w, x, tmp_path)
    assert len(np.unique(q)) > 10


@GCC
def test_time_major_avg_and_max_pools_in_c(tmp_path):
    """A 3x3 padded average (a division), a 2x2 average (a shift, floor) and a 2x2 max, per step."""
    rng = np.random.default_rng(7)
    x = rng.uniform(-8, 8, (50, 2, 6, 6)).astype(np.float32)
    x[:3] = -8.0
    x[3:6] = 7.9375
    q = check_c(POOLS, {}, x, tmp_path)
    assert len(np.unique(q)) > 20
