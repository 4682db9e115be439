"""Fixed-point spiking ops (fx.encode, fx.lif, fx.decode): the emulator against a reference written
here from the integer definition (Python ints, one unit at a time), the C against the emulator bit
for bit (gcc with address and undefined-behaviour sanitizers), text round trips and type errors."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from fx.test_c_backend import check_c  # tests/ is on sys.path (CI runs plain pytest)

from mpc.errors import MPCError
from mpc.ir import apply, parse, print_graph

GCC = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs the host gcc")


def ref_lif(x, theta, u0, beta, bfrac, soft, refractory, nearest, mem_bits, saturate):
    """Spikes of one unit's currents x[t] (Python ints), from the definition: leak by a rounding shift of
    beta*u, add x, bring into mem_bits (clamp or two's-complement wrap), spike at theta, reset, wait."""
    lo, hi = -(1 << (mem_bits - 1)), (1 << (mem_bits - 1)) - 1
    u, wait, out = u0, 0, []
    for xt in x:
        if wait:
            wait -= 1
            out.append(0)
            continue
        p = beta * u
        v = ((p + (1 << (bfrac - 1))) // (1 << bfrac) if nearest else p // (1 << bfrac)) if bfrac else p
        v += xt
        v = min(max(v, lo), hi) if saturate else (v - lo) % (1 << mem_bits) + lo
        if v >= theta:
            out.append(1)
            v, wait = (v - theta if soft else 0), refractory
        else:
            out.append(0)
        u = v
    return out


LIF = """graph @g(%x: fx<10,4>[{t},3,4]) -> (%y: fx<2,0>[{t},3,4]) {{
  weight @th : fx<10,4>[{c}]
  weight @u0 : fx<10,4>[{c}]
  %y = fx.lif(%x, @th, @u0) {{mem_bits = {m}, beta = {b}, beta_frac = {f}, reset = {reset}, refractory = {r}, rounding = {rnd}, overflow = {ovf}}} : fx<2,0>[{t},3,4]
}}
"""

CASES = [  # mem_bits, beta, beta_frac, reset, refractory, rounding, overflow, channels
    (14, 1, 0, "soft", 0, "nearest", "saturate", 1),
    (12, 29, 5, "zero", 2, "floor", "wrap", 4),
    (10, 13, 4, "soft", 1, "nearest", "wrap", 4),
    (10, 7, 3, "zero", 0, "nearest", "saturate", 1),
    (16, 0, 2, "soft", 3, "floor", "saturate", 4),
]


@pytest.mark.parametrize("m, b, f, reset, r, rnd, ovf, c", CASES)
def test_emulator_matches_the_definition(m, b, f, reset, r, rnd, ovf, c):
    rng = np.random.default_rng(m * 7 + b)
    steps = 12
    g = parse(LIF.format(t=steps, c=c, m=m, b=b, f=f, reset=reset, r=r, rnd=rnd, ovf=ovf),
              {"th": rng.integers(1, 300, c).astype(np.int16), "u0": rng.integers(-200, 200, c).astype(np.int16)})
    x = rng.integers(-512, 512, (steps, 3, 4)).astype(np.int16)
    x[:, 0, :] = 511                       # a strong constant drive: overflows a narrow membrane
    x[:, 1, 0] = -512                      # the most negative current
    got = apply(g.ops[0], [x, g.weights["th"], g.weights["u0"]])[0]
    assert got.dtype == np.int8 and 0 < got.sum() < got.size
    for n in range(3):
        for ch in range(4):
            k = ch % c
            want = ref_lif(x[:, n, ch].tolist(), int(g.weights["th"][k]), int(g.weights["u0"][k]), b, f,
                           reset == "soft", r, rnd == "nearest", m, ovf == "saturate")
            assert got[:, n, ch].tolist() == want, (n, ch)


@pytest.mark.parametrize("case", CASES)
def test_text_round_trips(case):
    m, b, f, reset, r, rnd, ovf, c = case
    text = LIF.format(t=5, c=c, m=m, b=b, f=f, reset=reset, r=r, rnd=rnd, ovf=ovf)
    w = {"th": np.ones(c, np.int16), "u0": np.zeros(c, np.int16)}
    once = print_graph(parse(text, w))
    assert print_graph(parse(once, w)) == once


@pytest.mark.parametrize("attrs, weights, message", [
    ("mem_bits = 8", {}, "mem_bits must be from x's width 10"),
    ("mem_bits = 12, beta = 40, beta_frac = 5", {}, "beta must be a stored integer in \\[0, 2\\^beta_frac\\]"),
    ("mem_bits = 60, beta = 1, beta_frac = 4", {}, "beta \\* u needs 65 bits"),
    ("mem_bits = 12", {"th": np.array([0], np.int16)}, "theta holds values below 1"),
    ("mem_bits = 10", {"u0": np.array([600], np.int16)}, "u0 holds values outside the 10-bit membrane"),
])
def test_bad_attributes_are_type_errors(attrs, weights, message):
    text = f"""graph @g(%x: fx<10,4>[5,N,4]) -> (%y: fx<2,0>[5,N,4]) {{
  weight @th : fx<10,4>[1]
  weight @u0 : fx<14,4>[1]
  %y = fx.lif(%x, @th, @u0) {{{attrs}}} : fx<2,0>[5,N,4]
}}
"""
    w = {"th": np.array([3], np.int16), "u0": np.array([1], np.int16)} | weights
    with pytest.raises(MPCError, match=message):
        parse(text, w)


def test_decode_mean_needs_a_power_of_two_and_the_right_fraction():
    text = """graph @g(%x: fx<10,4>[{t},N,4]) -> (%y: fx<16,{f}>[N,4]) {{
  %y = fx.decode(%x) {{to = "fx<16,{f}>"}} : fx<16,{f}>[N,4]
}}
"""
    parse(text.format(t=8, f=7), {})
    with pytest.raises(MPCError, match="step count 6 must be a power of two"):
        parse(text.format(t=6, f=7), {})
    with pytest.raises(MPCError, match="must be fx<W,7>"):
        parse(text.format(t=8, f=4), {})


NET = """graph @snn(%x: f32[N,6]) -> (%y: f32[N,4]) {
  weight @th1 : fx<10,4>[6]
  weight @u1 : fx<10,4>[6]
  weight @w : fx<8,3>[6,5]
  weight @b : fx<8,3>[5]
  weight @th2 : fx<10,3>[1]
  weight @u2 : fx<10,3>[1]
  weight @w2 : fx<8,5>[5,4]
  %0 = fx.quantize(%x) {to = "fx<10,4>"} : fx<10,4>[N,6]
  %1 = fx.encode(%0) {timesteps = 16} : fx<10,4>[16,N,6]
  %2 = fx.lif(%1, @th1, @u1) {mem_bits = 12, beta = 29, beta_frac = 5, reset = zero, refractory = 2, rounding = floor, overflow = wrap} : fx<2,0>[16,N,6]
  %3 = fx.matmul(%2, @w) {to = "fx<13,3>"} : fx<13,3>[16,N,5]
  %4 = fx.add(%3, @b) {to = "fx<14,3>"} : fx<14,3>[16,N,5]
  %5 = fx.cast(%4) {to = "fx<10,3>", overflow = wrap} : fx<10,3>[16,N,5]
  %6 = fx.lif(%5, @th2, @u2) {mem_bits = 10, overflow = wrap} : fx<2,0>[16,N,5]
  %7 = fx.matmul(%6, @w2) {to = "fx<12,5>"} : fx<12,5>[16,N,4]
  %8 = fx.decode(%7) {to = "fx<16,9>"} : fx<16,9>[N,4]
  %9 = fx.decode(%6) {to = "fx<6,0>", mode = sum} : fx<6,0>[N,5]
  %10 = fx.cast(%8) {to = "fx<12,7>", rounding = floor} : fx<12,7>[N,4]
  %y = fx.dequantize(%10) : f32[N,4]
}
"""


@GCC
def test_c_equals_the_emulator_with_sanitizers(tmp_path):
    """Leak, zero reset, refractory steps, wrap of a narrow membrane, spikes through a matmul, the mean
    readout: every output integer of the compiled C equals the emulator's."""
    rng = np.random.default_rng(3)
    w = {"th1": rng.integers(1, 200, 6).astype(np.int16), "u1": rng.integers(-100, 100, 6).astype(np.int16),
         "w": rng.integers(-128, 128, (6, 5)).astype(np.int8), "b": rng.integers(-128, 128, 5).astype(np.int8),
         "th2": np.array([90], np.int16), "u2": np.array([45], np.int16),
         "w2": rng.integers(-128, 128, (5, 4)).astype(np.int8)}
    w["w"][0, 0] = -128
    x = rng.uniform(-40, 40, (300, 6)).astype(np.float32)
    x[:5] = 31.96875                       # saturating input: the strongest constant current
    q = check_c(NET, w, x, tmp_path)
    assert len(np.unique(q)) > 20          # the outputs vary: spikes reached the readout

