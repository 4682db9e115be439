"""The fx op family against references written here from the definitions: Python integers and
Fractions for rounding and overflow (ties, the most negative value), a sort-based float64 MP
threshold for the integer bisection, and exact float64 sums for the integer layers; plus the text
round trip of every fx op kind and format."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from mpc.errors import VerifyError
from mpc.fx import Overflow, Rounding, mp_alpha, overflow, round_shift
from mpc.ir import parse, print_graph, run


def ref_round(q: int, s: int, rounding: str) -> int:
    """q / 2^s rounded: floor, or nearest with ties toward +infinity (Fractions, no shifts)."""
    v = Fraction(q, 2 ** s)
    return math.floor(v + Fraction(1, 2)) if rounding == "nearest" else math.floor(v)


def ref_overflow(v: int, width: int, mode: str) -> int:
    lo, hi = -2 ** (width - 1), 2 ** (width - 1) - 1
    if mode == "saturate":
        return min(max(v, lo), hi)
    return (v - lo) % 2 ** width + lo


@pytest.mark.parametrize("rounding", ["nearest", "floor"])
def test_round_shift_ties_and_extremes(rounding):
    values = [-(2 ** 31), 2 ** 31 - 1, -5, -4, -3, -2, -1, 0, 1, 2, 3, 5, 6, 7, -6, -7, 12345, -12345]
    for s in range(5):
        got = round_shift(np.array(values), s, Rounding(rounding))
        assert got.tolist() == [ref_round(v, s, rounding) for v in values], s
    assert round_shift(np.array([-3]), -2, Rounding(rounding)).tolist() == [-12]


@pytest.mark.parametrize("mode", ["saturate", "wrap"])
@pytest.mark.parametrize("width", [1, 4, 8, 13, 16, 32])
def test_overflow(mode, width):
    vals = [-(2 ** 40), -(2 ** (width - 1)) - 1, -(2 ** (width - 1)), -1, 0, 1, 2 ** (width - 1) - 1,
            2 ** (width - 1), 2 ** width + 3, 2 ** 40 + 7]
    container = np.dtype(f"int{next(b for b in (8, 16, 32, 64) if b >= width)}")
    got = overflow(np.array(vals), width, Overflow(mode), container)
    assert got.dtype == container
    assert got.tolist() == [ref_overflow(v, width, mode) for v in vals]


def ref_alpha(a: np.ndarray, gamma: float) -> float:
    """α with Σ_j g(a_j, α) = γ over p = [a; -a], by sorting (the definition's closed form)."""
    p = np.sort(np.concatenate([a, -a]).astype(np.float64))[::-1]
    c = (np.cumsum(p) - gamma) / np.arange(1, p.size + 1)
    return float(c.max())


def test_mp_alpha_is_floor_of_exact_threshold():
    rng = np.random.default_rng(1)
    for _ in range(300):
        d = int(rng.integers(1, 40))
        a = np.abs(rng.integers(-3000, 3000, d)).astype(np.int64)
        gamma = int(rng.integers(1, 50000))
        got = int(mp_alpha(a[None], gamma, gamma.bit_length())[0])
        exact = ref_alpha(a, gamma)
        if abs(exact - round(exact)) < 1e-6:   # float64 cannot say which side of an integer it lies
            assert got in (round(exact), round(exact) - 1)
        else:
            assert got == math.floor(exact), (a, gamma)


GRAPH = """graph @g(%x: f32[N,4]) -> (%y: f32[N,3]) {
  weight @w : fx<8,6>[4,3]
  weight @b : fx<20,12>[3]
  %0 = fx.quantize(%x) {to = "fx<8,6>", rounding = floor, overflow = wrap} : fx<8,6>[N,4]
  %1 = fx.matmul(%0, @w) {to = "fx<19,12>"} : fx<19,12>[N,3]
  %2 = fx.add(%1, @b) {to = "fx<20,12>"} : fx<20,12>[N,3]
  %3 = fx.relu(%2) : fx<20,12>[N,3]
  %4 = fx.cast(%3) {to = "fx<8,4>", rounding = floor} : fx<8,4>[N,3]
  %y = fx.dequantize(%4) : f32[N,3]
}
"""


def _dense_weights():
    rng = np.random.default_rng(2)
    return {"w": rng.integers(-128, 128, (4, 3)).astype(np.int8), "b": rng.integers(-3000, 3000, 3).astype(np.int32)}


def test_dense_chain_matches_exact_reference():
    weights = _dense_weights()
    g = parse(GRAPH, weights)
    assert print_graph(g) == GRAPH
    x = np.random.default_rng(3).uniform(-2.5, 2.5, (64, 4)).astype(np.float32)
    got = run(g, {"x": x}, keep_all=True)
    # reference from the definitions, in Python integers
    for n in range(x.shape[0]):
        q = [ref_overflow(math.floor(Fraction(float(v)) * 64), 8, "wrap") for v in x[n]]
        assert got["0"][n].tolist() == q
        acc = [sum(q[j] * int(weights["w"][j, h]) for j in range(4)) for h in range(3)]
        s = [ref_overflow(acc[h] + int(weights["b"][h]), 20, "saturate") for h in range(3)]
        y = [ref_overflow(ref_round(max(v, 0), 8, "floor"), 8, "saturate") for v in s]
        assert got["4"][n].tolist() == y
        assert got["y"][n].tolist() == [v / 16 for v in y]


ALL_KINDS = """graph @all(%x: f32[N,2,4,4]) -> (%y: f64[N,3], %z: f32[N,2,2,2]) {
  weight @k : fx<8,5>[3,2,3,3]
  weight @w : fx<8,6>[3,8]
  weight @s : i8[3,2]
  weight @t : i8[3,2]
  %0 = fx.quantize(%x) {to = "fx<12,8>"} : fx<12,8>[N,2,4,4]
  %1 = fx.conv2d(%0, @k) {to = "fx<28,13>", pads = [1, 1, 1, 1]} : fx<28,13>[N,3,4,4]
  %2 = fx.maxpool2d(%0) {kernel = [2, 2], strides = [2, 2]} : fx<12,8>[N,2,2,2]
  %3 = fx.avgpool2d(%0) {kernel = [2, 2], to = "fx<12,8>", strides = [2, 2], overflow = wrap} : fx<12,8>[N,2,2,2]
  %4 = fx.add(%2, %3) {to = "fx<13,8>"} : fx<13,8>[N,2,2,2]
  %5 = nn.flatten(%4) : fx<13,8>[N,8]
  %6 = fx.cast(%5) {to = "fx<10,6>"} : fx<10,6>[N,8]
  %7 = fx.mp_dot(%6, @w, @s, @t) {gamma = 300, to = "fx<24,8>", c_shift = -1} : fx<24,8>[N,3]
  %8 = fx.mp_conv2d(%0, @k, @s, @t) {gamma = 900, to = "fx<30,10>", strides = [2, 2]} : fx<30,10>[N,3,1,1]
  %y = fx.dequantize(%7) {to = f64} : f64[N,3]
  %z = fx.dequantize(%3) : f32[N,2,2,2]
}
"""


def test_every_kind_round_trips():
    rng = np.random.default_rng(4)
    w = {"k": rng.integers(-128, 128, (3, 2, 3, 3)).astype(np.int8),
         "w": rng.integers(-128, 128, (3, 8)).astype(np.int8),
         "s": rng.integers(0, 4, (3, 2)).astype(np.int8), "t": rng.integers(-1, 2, (3, 2)).astype(np.int8)}
    g = parse(ALL_KINDS, w)
    text = print_graph(g)
    assert text == ALL_KINDS
    assert print_graph(parse(text, w)) == text
    out = run(g, {"x": rng.uniform(-4, 4, (5, 2, 4, 4)).astype(np.float32)})
    assert out["y"].shape == (5, 3) and out["z"].shape == (5, 2, 2, 2)


@pytest.mark.parametrize("bad, msg", [
    ('%1 = fx.matmul(%0, @w) {to = "fx<19,11>"} : fx<19,11>[N,3]', "result fraction must be 6 + 6 = 12"),
    ('%1 = fx.matmul(%0, @w) {to = "ufx<19,12>"} : ufx<19,12>[N,3]', "signed fixed point"),
    ('%1 = fx.matmul(%0, @w) {to = "fx<19,12>", overflow = clamp} : fx<19,12>[N,3]', "saturate"),
])
def test_bad_ops_are_rejected_with_location(bad, msg):
    text = GRAPH.replace('%1 = fx.matmul(%0, @w) {to = "fx<19,12>"} : fx<19,12>[N,3]', bad)
    with pytest.raises(Exception) as e:
        parse(text, _dense_weights())
    assert msg in str(e.value) and ":5:" in str(e.value)


def test_avgpool_rejects_a_division_numerator_beyond_int64():
    """A window area that is not a power of two divides (tests/fx/test_avgpool_divide.py); the sum
    shifted to the result's fraction must fit in int64 (API change on purpose: such areas were rejected)."""
    text = """graph @g(%x: fx<12,8>[N,2,4,4]) -> (%y: fx<12,56>[N,2,2,1]) {
  %y = fx.avgpool2d(%x) {kernel = [2, 3], to = "fx<12,56>", strides = [2, 2]} : fx<12,56>[N,2,2,1]
}
"""
    with pytest.raises(VerifyError, match="needs more than 62 bits"):
        parse(text, {})


def test_mp_dot_matches_reference_from_the_definition():
    """fx.mp_dot = Σ_t sign·(⌊α⌋ - ⌊β⌋)·2^shift, α, β the exact thresholds of |x·c + w|, |x·c - w|."""
    rng = np.random.default_rng(7)
    d, h = 6, 4
    w = rng.integers(-128, 128, (h, d)).astype(np.int8)
    shift = rng.integers(0, 5, (h, 2)).astype(np.int8)
    sign = rng.integers(-1, 2, (h, 2)).astype(np.int8)
    text = f"""graph @g(%x: f32[N,{d}]) -> (%y: f32[N,{h}]) {{
  weight @w : fx<8,6>[{h},{d}]
  weight @s : i8[{h},2]
  weight @t : i8[{h},2]
  %0 = fx.quantize(%x) {{to = "fx<8,5>"}} : fx<8,5>[N,{d}]
  %1 = fx.mp_dot(%0, @w, @s, @t) {{gamma = 150, to = "fx<40,6>", c_shift = -1}} : fx<40,6>[N,{h}]
  %y = fx.dequantize(%1) {{to = f64}} : f64[N,{h}]
}}
"""
    g = parse(text.replace("-> (%y: f32", "-> (%y: f64"), {"w": w, "s": shift, "t": sign})
    x = rng.uniform(-3, 3, (40, d)).astype(np.float32)
    got = run(g, {"x": x}, keep_all=True)
    q = got["0"].astype(np.int64)
    for n in range(x.shape[0]):
        xs = q[n]   # c = 1/2: x·c is the stored integer read at fraction 5 + 1 = 6, the weight's: no shift
        for j in range(h):
            fa, fb = (ref_alpha(np.abs(xs + s * w[j].astype(np.int64)), 150) for s in (1, -1))
            diff = math.floor(fa + 1e-9) - math.floor(fb + 1e-9)
            want = sum(int(sign[j, t]) * diff * 2 ** int(shift[j, t]) for t in range(2))
            assert int(got["1"][n, j]) == want
