"""Operation counts of the emulator (mpc.fx.count) against counts written here from the definitions:
a matmul of known shape, an MP dot on a hand-made vector whose bisection path is worked out below,
and a scalar transcription of the C MP loops on random data. Conventions: see mpc.fx.count."""
from __future__ import annotations

import numpy as np
import pytest

from mpc.data import Dataset
from mpc.fx.count import KINDS, count_ops
from mpc.ir import parse

MATMUL = """graph @mm(%x: f32[N,5]) -> (%y: f32[N,4]) {
  weight @w : fx<8,4>[5,4]
  %0 = fx.quantize(%x) {to = "fx<8,4>"} : fx<8,4>[N,5]
  %1 = fx.matmul(%0, @w) {to = "fx<12,8>"} : fx<12,8>[N,4]
  %y = fx.dequantize(%1) : f32[N,4]
}
"""


def test_matmul_counts_products_adds_and_saturation_tests():
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (5, 4))
    x = rng.uniform(-8, 8, (6, 5)).astype(np.float32)
    counts = count_ops(parse(MATMUL, {"w": w.astype(np.int8)}), Dataset({"x": x}, None, "test"))["1"]
    # float64 reference: the quantized integers (nearest, ties up, saturate to 8 bits), their product
    q = np.clip(np.floor(x.astype(np.float64) * 16 + 0.5), -128, 127)
    acc = q @ w.astype(np.float64)
    in_range_high = (acc <= 2047).sum(axis=1)          # `v > hi` false: the second test `v < lo` runs
    assert (acc > 2047).any() and (acc <= 2047).any()   # both branches of the saturation happen
    np.testing.assert_array_equal(counts["multiply"], 5 * 4)
    np.testing.assert_array_equal(counts["add"], 5 * 4)
    np.testing.assert_array_equal(counts["compare"], 4 + in_range_high)
    np.testing.assert_array_equal(counts["shift"], 0)
    np.testing.assert_array_equal(counts["divide"], 0)


MP = """graph @mp(%x: f32[N,{d}]) -> (%y: f32[N,{h}]) {{
  weight @w : fx<8,{fw}>[{h},{d}]
  weight @s : i8[{h},3]
  weight @t : i8[{h},3]
  %0 = fx.quantize(%x) {{to = "fx<8,{fx}>"}} : fx<8,{fx}>[N,{d}]
  %1 = fx.mp_dot(%0, @w, @s, @t) {{gamma = {gamma}, to = "fx<16,{fo}>"}} : fx<16,{fo}>[N,{h}]
  %y = fx.dequantize(%1) : f32[N,{h}]
}}
"""


def test_mp_dot_hand_made_bisection_path():
    # x = [3, -1], w = [1, 2] (integers: no fraction bits), γ = 3, so 2 halvings.
    # x + w = [4, 1] (no negation), x - w = [2, -3] (one negation): 4 adds + 1, 4 sign tests.
    # α on a = [4, 1]: max (1 compare), lo = 4 - 3 = 1 (1 add), hi = 4.
    #   step 1: mid = 2 (2 adds, 1 shift), -mid (1 add); parts [2, 0]: sum 2 < 3 after both, both visited:
    #     4 subtracts, 4 `> 0` tests, 1 add of a positive part, 2 `f < γ` tests, final test -> hi = 2
    #     adds 3 + 4 + 1 = 8, compares 4 + 2 + 1 = 7
    #   step 2: mid = 1; part of 4 is 3, the sum reaches γ: 1 visited, then `f < γ` fails at i = 1:
    #     adds 3 + 2 + 1 = 6, compares 2 + 2 + 1 = 5 -> lo = 1 = α
    #   α: adds 1 + 8 + 6 = 15, compares 1 + 7 + 5 = 13, shifts 2
    # β on b = [2, 3]: max, lo = 0, hi = 3.
    #   step 1: mid = 1; parts [1, 2], both visited, 2 positive: adds 3 + 4 + 2 = 9, compares 4 + 2 + 1 = 7 -> lo = 1
    #   step 2: mid = 2; parts [0, 1], both visited, 1 positive: adds 3 + 4 + 1 = 8, compares 7 -> hi = 2
    #   β: adds 1 + 9 + 8 = 18, compares 1 + 7 + 7 = 15, shifts 2
    # gain: α - β (1 add); signs [1, -1, 0] with shifts [2, 0, 3]: sign tests 1 + 2 + 2 = 5,
    #   2 adds (non-zero signs), 1 shift (the -1 term has shift 0)
    # output y = 0 saturated to 16 bits: 2 compares
    weights = {"w": np.array([[1, 2]], np.int8), "s": np.array([[2, 0, 3]], np.int8),
               "t": np.array([[1, -1, 0]], np.int8)}
    g = parse(MP.format(d=2, h=1, fw=0, fx=0, fo=0, gamma=3), weights)
    counts = count_ops(g, Dataset({"x": np.array([[3.0, -1.0]], np.float32)}, None, "test"))["1"]
    want = {"add": 5 + 15 + 18 + 1 + 2, "compare": 4 + 13 + 15 + 5 + 2, "shift": 2 + 2 + 1,
            "multiply": 0, "divide": 0}
    assert {k: int(counts[k][0]) for k in KINDS} == want


def _alpha_like_c(a: list[int], gamma: int, halvings: int, n: dict) -> int:
    """mpc_mp_alpha of the C backend, one statement at a time, counting what each statement does."""
    top = a[0]
    for v in a[1:]:
        n["compare"] += 1
        top = max(top, v)
    lo, hi = top - gamma, top
    n["add"] += 1
    for _ in range(halvings):
        mid = lo + ((hi - lo) >> 1)
        n["add"] += 3   # hi - lo, lo + ..., and -mid for `-a[i] - mid`
        n["shift"] += 1
        f, i = 0, 0
        while i < len(a):
            n["compare"] += 1   # f < gamma
            if f >= gamma:
                break
            for t in (a[i] - mid, -a[i] - mid):
                n["add"] += 1
                n["compare"] += 1
                if t > 0:
                    f += t
                    n["add"] += 1
            i += 1
        n["compare"] += 1
        lo, hi = (mid, hi) if f >= gamma else (lo, mid)
    return lo


def _mp_dot_like_c(x: np.ndarray, w: np.ndarray, gamma: int, shifts, signs, sx: int, sw: int) -> dict:
    """Counts of the C fx.mp_dot block for one sample (operands already integers)."""
    n = dict.fromkeys(KINDS, 0)
    halvings = gamma.bit_length()
    for h in range(w.shape[0]):
        a, b = [], []
        for j in range(w.shape[1]):
            n["shift"] += (sx != 0) + (sw != 0)
            xs, ws = int(x[j]) << sx, int(w[h, j]) << sw
            for u, out in ((xs + ws, a), (xs - ws, b)):
                n["add"] += 1 + (u < 0)
                n["compare"] += 1
                out.append(abs(u))
        d = _alpha_like_c(a, gamma, halvings, n) - _alpha_like_c(b, gamma, halvings, n)
        n["add"] += 1
        y = 0
        for s, g in zip(shifts[h], signs[h]):
            n["compare"] += 1 if g > 0 else 2
            if g != 0:
                n["shift"] += s != 0
                n["add"] += 1
                y += int(g) * (d << int(s))
        n["compare"] += 1 + (y <= 32767)
    return n


@pytest.mark.parametrize("gamma, fx, fw", [(37, 6, 4), (5, 3, 7), (1000, 5, 5)])
def test_mp_dot_counts_match_a_transcription_of_the_c_loops(gamma, fx, fw):
    rng = np.random.default_rng(gamma)
    d, h = 7, 3
    w = rng.integers(-128, 128, (h, d))
    shifts, signs = rng.integers(0, 4, (h, 3)), rng.integers(-1, 2, (h, 3))
    x = rng.uniform(-2, 2, (5, d)).astype(np.float32)
    weights = {"w": w.astype(np.int8), "s": shifts.astype(np.int8), "t": signs.astype(np.int8)}
    g = parse(MP.format(d=d, h=h, fw=fw, fx=fx, fo=max(fx, fw), gamma=gamma), weights)
    counts = count_ops(g, Dataset({"x": x}, None, "test"))["1"]
    q = np.clip(np.floor(x.astype(np.float64) * 2.0 ** fx + 0.5), -128, 127).astype(np.int64)
    common = max(fx, fw)
    for i in range(x.shape[0]):
        want = _mp_dot_like_c(q[i], w, gamma, shifts, signs, common - fx, common - fw)
        assert {k: int(counts[k][i]) for k in KINDS} == want
