"""mp-calibrate's per-channel weight scales: each output channel's power of two is the one whose MP output,
after its least-squares affine fit, is closest to the float layer, checked with the independent float64
MP reference (tests/mp/mp_reference.py) on a one-layer net whose weight rows differ widely in norm."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from mp.mp_reference import y_mp
from onnx import TensorProto, helper, numpy_helper

from mpc.driver.compiler import Settings, compile_model

D, H, N = 12, 6, 120


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    """A MatMul + Add layer, rows of W scaled by 2^-4 .. 2^4, and 120 U(0, 1) calibration samples."""
    rng = np.random.default_rng(7)
    w = rng.uniform(-1, 1, (D, H)) * 2.0 ** np.linspace(-4, 4, H)   # column h of W is output channel h
    b = rng.uniform(-0.1, 0.1, H)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["m"], name="fc"), helper.make_node("Add", ["m", "B"], ["out"])],
        "one_layer", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", D])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", H])],
        [numpy_helper.from_array(w.astype(np.float32), "W"), numpy_helper.from_array(b.astype(np.float32), "B")])
    d = tmp_path_factory.mktemp("chscale")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), d / "m.onnx")
    x = rng.uniform(0, 1, (N, D)).astype(np.float32)
    np.savez(d / "calib.npz", input=x)
    return str(d / "m.onnx"), str(d / "calib.npz"), x.astype(np.float64), w.T.astype(np.float32).astype(np.float64)


def mp_op(model: str, calib: str, scale: bool):
    passes = f"canonicalize,mp-rewrite,mp-calibrate{{gain=float,channel_scale={str(scale).lower()}}},dce"
    g = compile_model(model, Settings(target="mp", calib=calib, passes=passes, quiet=True)).graph
    (op,) = [op for op in g.ops if op.kind == "mp.dot"]
    return op, g.weights[op.operands[1].name].astype(np.float64)


def affine_sse(y: np.ndarray, t: np.ndarray) -> float:
    """Squared error of t left after its least-squares fit by a·y + b (np.linalg.lstsq)."""
    a = np.stack([y, np.ones_like(y)], axis=1)
    coef = np.linalg.lstsq(a, t, rcond=None)[0]
    return float(((a @ coef - t) ** 2).sum())


def test_each_channel_gets_the_best_power_of_two(problem):
    model, calib, x, w = problem
    op, ws = mp_op(model, calib, scale=True)
    gamma, c = op.attrs.gamma, op.attrs.c
    ratio = ws[:, 0] / w[:, 0]
    np.testing.assert_allclose(ws, w * ratio[:, None], rtol=1e-6)   # rows scaled, nothing else changed
    k_chosen = np.log2(ratio)
    np.testing.assert_allclose(k_chosen, np.round(k_chosen), atol=1e-6)   # powers of two
    t = x @ w.T
    for h in range(H):
        sse = {k: affine_sse(y_mp(x * c, (w[h:h + 1] * 2.0 ** k) / c, gamma)[:, 0], t[:, h]) for k in range(-3, 4)}
        best = min(sse.values())
        assert sse[round(k_chosen[h])] <= best * (1 + 1e-6) + 1e-12, (h, k_chosen[h], sse)
    assert np.any(np.round(k_chosen) != 0)   # on these rows (norms 2^-4 .. 2^4) some channel does move


def test_scales_never_raise_a_channels_error(problem):
    """Same γ and c with and without scales (the search comes first); every channel's fitted error is no
    larger with its scale, both measured through the reference."""
    model, calib, x, w = problem
    t = x @ w.T
    errs = []
    for scale in (False, True):
        op, ws = mp_op(model, calib, scale)
        y = y_mp(x * op.attrs.c, ws / op.attrs.c, op.attrs.gamma)
        errs.append([affine_sse(y[:, h], t[:, h]) for h in range(H)])
    off, on = np.array(errs[0]), np.array(errs[1])
    assert np.all(on <= off * (1 + 1e-6) + 1e-12), (off, on)
    assert on.sum() < off.sum()


def test_cli_flag_turns_scales_on_and_rejects_other_values(problem, tmp_path, capsys):
    """`--channel-scale true` gives the MP op scaled weights (off by default); a bad value is one error line."""
    from cli_helpers import error_line, run_cli
    model, calib = problem[:2]
    for flag, scaled in ((["--channel-scale", "true"], True), ([], False)):
        out = tmp_path / f"out{len(flag)}"
        rc, _, err = run_cli(capsys, "convert", model, "--target", "mp", "--calib", calib, "-o", out, "-q", *flag)
        assert rc == 0, err
        assert ("mpscale" in (out / "model.mpc").read_text()) is scaled
    rc, _, err = run_cli(capsys, "convert", model, "--target", "mp", "--channel-scale", "yes", "-o", tmp_path / "x")
    assert rc == 2 and "channel-scale" in error_line(err)
