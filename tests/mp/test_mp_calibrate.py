"""mp-calibrate's pieces against hand-computed cases and an independent float64 MP reference:
the affine fit, its error, gain snapping, the γ bound, the (γ, c) search and offset folding."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from mpc.passes.mp_calibrate import _fold_offset, affine_fit, gamma_bound, rel_err, search, snap_gains

from mpc.ir import make_op, parse, print_graph, replace_all_uses, run, with_attrs

from .mp_reference import y_mp


# -- affine fit and its error --------------------------------------------------------------
def test_affine_fit_exact_line_and_constant_column():
    y = np.array([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    t = np.array([[2.0, 1.0], [5.0, 2.0], [8.0, 3.0], [11.0, 6.0]])   # column 0: t = 3y + 2
    g, o = affine_fit(y, t)
    np.testing.assert_allclose(g, [3.0, 0.0], atol=1e-12)   # a constant y has no slope: g = 0
    np.testing.assert_allclose(o, [2.0, 3.0], atol=1e-12)   # ... and the offset is mean(t) = 3


def test_affine_fit_least_squares_by_hand():
    """y = 0..3, t = 1, 3, 2, 5: ȳ = 1.5, t̄ = 2.75, Σ(y−ȳ)(t−t̄) = 5.5, Σ(y−ȳ)² = 5, so g = 1.1 and
    o = t̄ − g·ȳ = 1.1."""
    g, o = affine_fit(np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([[1.0], [3.0], [2.0], [5.0]]))
    np.testing.assert_allclose([g[0], o[0]], [1.1, 1.1], rtol=1e-12)


def test_rel_err_by_hand():
    """Residuals g·y + o − t = 1, −1, 1, −1 (RMS 1); t = 2, 2, 2, 2 (RMS 2): 0.5."""
    y = np.array([[1.0], [1.0], [1.0], [1.0]])
    t = np.array([[2.0], [4.0], [2.0], [4.0]]) - np.array([[0.0], [2.0], [0.0], [2.0]])
    assert rel_err(y, t, np.array([2.0]), np.array([1.0])) == pytest.approx(0.5)


# -- gains: at most K signed power-of-two terms of g·scale ------------------------------------
@pytest.mark.parametrize("terms, want, used", [
    # g·4 = 5, −7, 0.3, 0. One term: 5 → 4 (8 is 3 away), −7 → −8, 0.3 → 0.25 (0.5 is 0.2 away).
    (1, [4.0, -8.0, 0.25, 0.0], 1),
    # Two terms: 5 = 4 + 1 and −7 = −8 + 1 exactly; 0.3 → 0.25 + 0.0625 = 0.3125 (off by 0.0125; the
    # other candidates 0.25 + 0.03125, 0.5 − 0.25, 0.5 − 0.125 are off by 0.01875, 0.05, 0.075).
    (2, [5.0, -7.0, 0.3125, 0.0], 2),
])
def test_snap_gains_by_hand(terms, want, used):
    g = np.array([1.25, -1.75, 0.075, 0.0])
    snapped, most = snap_gains(g, 4.0, terms)
    np.testing.assert_allclose(snapped * 4.0, want, rtol=1e-15)
    assert most == used


# -- the γ bound (Kotak §3.1, eq. 3.11) ------------------------------------------------------
def test_gamma_bound_minimizes_the_error_bound():
    """E(γ) = K⁴/(γ²D) + γ²D·L with L = ln(1 + 2D/e): E'(γ) = −2K⁴/(γ³D) + 2γDL = 0 gives
    γ⁴ = K⁴/(D²L), γ* = K/(√D·L^¼). K bounds the row norms of x·c and w/c."""
    x = np.array([[3.0, 4.0, 0.0], [1.0, 0.0, 0.0]])   # row norms 5 and 1
    w = np.array([[0.0, 0.0, 2.0]])                     # row norm 2
    d, L = 3, math.log(1 + 6 / math.e)

    def bound(gamma, k):
        return k ** 4 / (gamma ** 2 * d) + gamma ** 2 * d * L

    for c, k in [(1.0, 5.0), (2.0, 10.0), (1 / 8, 16.0)]:   # K = max(5c, 2/c)
        star = k / (math.sqrt(d) * L ** 0.25)
        assert gamma_bound(x, w, c) == pytest.approx(star, rel=1e-12)
        assert bound(star, k) < min(bound(star * 1.01, k), bound(star / 1.01, k))


# -- the search ------------------------------------------------------------------------------
def _layer(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (64, 5))
    w = rng.standard_normal((3, 5)) * 4.0          # weights larger than data: the balance c matters
    return [(x, w, slice(0, 3))], x @ w.T


def _err(groups, t, gamma, c) -> float:
    """The affine-fit error at (γ, c), from the reference MP and NumPy's least squares."""
    (x, w, _), = groups
    y = y_mp(x * c, w / c, gamma)
    fits = [np.polyfit(y[:, h], t[:, h], 1) for h in range(t.shape[1])]
    r = np.stack([a * y[:, h] + b - t[:, h] for h, (a, b) in enumerate(fits)], axis=1)
    return math.sqrt((r ** 2).mean() / (t ** 2).mean())


def _is_power_of_two(v: float) -> bool:
    return v > 0 and math.log2(v) == round(math.log2(v))


def test_search_finds_a_grid_point_no_neighbour_beats():
    groups, t = _layer()
    gamma, c, e = search(groups, t, None, np.random.default_rng(0))
    assert _is_power_of_two(gamma * 5 / 2) and _is_power_of_two(c)
    assert e == pytest.approx(_err(groups, t, gamma, c), rel=1e-6)
    assert e < 0.2, e
    for g2 in (gamma * 2, gamma / 2):   # the γ walk stopped because both neighbours are worse
        assert _err(groups, t, g2, c) >= e * (1 - 1e-9), g2


def test_search_with_a_fixed_gamma_walks_c_only():
    groups, t = _layer(1)
    gamma, c, e = search(groups, t, 0.4, np.random.default_rng(0))
    assert gamma == 0.4 and _is_power_of_two(c)
    assert e == pytest.approx(_err(groups, t, 0.4, c), rel=1e-6)
    for c2 in (c * 2, c / 2):
        assert _err(groups, t, 0.4, c2) >= e * (1 - 1e-9), c2


# -- folding the offset into the following bias ---------------------------------------------
DOT = """graph @g(%x: f32[N,2]) -> (%y: f32[N,3]) {
  weight @w : f32[3,2]
  weight @gain : f32[3]
  weight @off : f32[3]
  weight @b : f32[3]
  %0 = mp.dot(%x, @w, @gain, @off) {gamma = 1.0} : f32[N,3]
  %y = nn.add(%0, @b) : f32[N,3]
}
"""
WEIGHTS = {"w": np.array([[1, 2], [3, 4], [5, 6]], np.float32), "gain": np.array([1, 2, 4], np.float32),
           "off": np.array([0.5, -1, 2], np.float32), "b": np.array([1, 2, 3], np.float32)}


def test_fold_offset_into_the_bias():
    g = parse(DOT, dict(WEIGHTS))
    x = {"x": np.array([[0.5, -1.0], [2.0, 0.25]], np.float32)}
    before = run(g, x)["y"]
    assert _fold_offset(g, g.ops[0]) is True
    assert print_graph(g) == """graph @g(%x: f32[N,2]) -> (%y: f32[N,3]) {
  weight @w : f32[3,2]
  weight @gain : f32[3]
  weight @b.mpfold : f32[3]
  %0 = mp.dot(%x, @w, @gain) {gamma = 1.0} : f32[N,3]
  %y = nn.add(%0, @b.mpfold) : f32[N,3]
}
"""
    np.testing.assert_array_equal(g.weights["b.mpfold"], [1.5, 1.0, 5.0])   # b + off, by hand
    np.testing.assert_allclose(run(g, x)["y"], before, rtol=1e-6)


@pytest.mark.parametrize("change", ["graph output", "two users", "data bias"])
def test_fold_offset_refuses(change):
    text = DOT
    if change == "graph output":
        text = text.replace("-> (%y: f32[N,3])", "-> (%y: f32[N,3], %0: f32[N,3])")
    if change == "two users":
        text = text.replace("-> (%y: f32[N,3])", "-> (%z: f32[N,3])").replace(
            "}\n", "  %z = nn.add(%y, %0) : f32[N,3]\n}\n")
    if change == "data bias":
        text = text.replace("(%x: f32[N,2])", "(%x: f32[N,2], %c: f32[N,3])").replace("nn.add(%0, @b)", "nn.add(%0, %c)")
    g = parse(text, dict(WEIGHTS))
    before = print_graph(g)
    assert _fold_offset(g, g.ops[0]) is False
    assert print_graph(g) == before


def test_fold_offset_into_a_conv_bias():
    text = """graph @g(%x: f32[N,1,3,3]) -> (%y: f32[N,2,2,2]) {
  weight @w : f32[2,1,2,2]
  weight @gain : f32[2]
  weight @off : f32[2]
  weight @b : f32[2,1,1]
  %0 = mp.conv2d(%x, @w, @gain, @off) {gamma = 1.0} : f32[N,2,2,2]
  %y = nn.add(%0, @b) : f32[N,2,2,2]
}
"""
    weights = {"w": np.ones((2, 1, 2, 2), np.float32), "gain": np.ones(2, np.float32),
               "off": np.array([0.25, -3], np.float32), "b": np.array([[[1]], [[2]]], np.float32)}
    g = parse(text, weights)
    assert _fold_offset(g, g.ops[0]) is True
    np.testing.assert_array_equal(g.weights["b.mpfold"], [[[1.25]], [[-1.0]]])


def test_calibrating_twice_changes_nothing():
    """A second mp-calibrate leaves calibrated ops alone (it used to refit from the raw product and fold a
    second offset into the bias)."""
    from mpc.passmanager import run_pipeline
    text = """graph @g(%x: f32[N,4]) -> (%y: f32[N,3]) {
  weight @fc.weight.T : f32[4,3]
  weight @fc.bias : f32[3]
  %0 = nn.matmul(%x, @fc.weight.T) : f32[N,3]
  %y = nn.add(%0, @fc.bias) : f32[N,3]
}
"""
    rng = np.random.default_rng(0)
    g = parse(text, {"fc.weight.T": rng.standard_normal((4, 3)).astype(np.float32),
                     "fc.bias": rng.standard_normal(3).astype(np.float32)})
    x = {"x": rng.uniform(0, 1, (32, 4)).astype(np.float32)}
    run_pipeline(g, "mp-rewrite,mp-calibrate")
    once = run(g, x)["y"]
    run_pipeline(g, "mp-calibrate")
    np.testing.assert_allclose(run(g, x)["y"], once, rtol=1e-6, atol=1e-6)


TWO_MATMULS = """graph @g(%x: f32[N,4]) -> (%y: f32[N,3]) {
  weight @a.weight.T : f32[4,4]
  weight @b.weight.T : f32[4,3]
  %0 = nn.matmul(%x, @a.weight.T) : f32[N,4]
  %y = nn.matmul(%0, @b.weight.T) : f32[N,3]
}
"""


def _two_matmuls(seed: int):
    """Two back-to-back matmuls (nothing between them), seeded weights; returns (graph, weights)."""
    rng = np.random.default_rng(seed)
    w = {"a.weight.T": rng.standard_normal((4, 4)).astype(np.float32),
         "b.weight.T": rng.standard_normal((4, 3)).astype(np.float32)}
    return parse(TWO_MATMULS, w), w


def test_a_mix_of_calibrated_and_fresh_mp_ops_is_refused():
    from mpc.errors import BadInput
    from mpc.passmanager import run_pipeline
    g, _ = _two_matmuls(1)
    run_pipeline(g, "mp-rewrite,mp-calibrate")
    second = [op for op in g.ops if op.kind == "mp.dot"][1]   # made fresh again: unit gain, zero offset, c = 1
    fresh = make_op(g, "mp.dot", second.operands[:2] + [
        g.add_weight("fresh.gain", np.ones(3, np.float32)), g.add_weight("fresh.offset", np.zeros(3, np.float32))],
        with_attrs(second.attrs, c=1.0), second.loc)
    g.ops[g.ops.index(second)] = fresh
    replace_all_uses(g, second.result, fresh.result)
    with pytest.raises(BadInput, match=r"^mp-calibrate: op 'mp\.dot' at .* is already calibrated but 1 other "
                                       r"MP op\(s\) are not"):
        run_pipeline(g, "mp-calibrate")


def test_converting_a_converted_mp_folder_again_keeps_its_calibration(tmp_path):
    """`mpc convert OUT/model.mpc --target mp` used to recalibrate a calibrated model."""
    from mpc.cli import main
    root = Path(__file__).resolve().parents[2] / "examples"
    first, again = tmp_path / "first", tmp_path / "again"
    assert main(["convert", str(root / "models" / "digits_mlp.onnx"), "--target", "mp", "--calib",
                 str(root / "data" / "digits_train.npz"), "-o", str(first), "-q"]) == 0
    assert main(["convert", str(first / "model.mpc"), "--target", "mp", "-o", str(again), "-q"]) == 0
    assert (again / "model.mpc").read_text() == (first / "model.mpc").read_text()


def test_back_to_back_mp_ops_calibrate_into_valid_ir():
    """Two matmuls with nothing between them: the second calibrated op must read the first calibrated
    op's result (a new op built before the first was swapped in used to keep the old value)."""
    from mpc.passmanager import run_pipeline
    g, w = _two_matmuls(2)
    rng = np.random.default_rng(3)
    run_pipeline(g, "mp-rewrite,mp-calibrate")
    first, second = [op for op in g.ops if op.kind == "mp.dot"]
    assert second.operands[0] is first.result
    x = rng.uniform(0, 1, (64, 4)).astype(np.float32)
    ref = x.astype(np.float64) @ w["a.weight.T"] @ w["b.weight.T"]
    got = run(g, {"x": x})["y"]
    assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.9
