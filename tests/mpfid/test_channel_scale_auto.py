"""mp-calibrate{channel_scale=auto}: per-channel weight scales chosen on the calibration samples that are not
held out (every 4th sample is), kept for a layer only when they lower its held-out error, and kept for the
network only when its logits on the held-out samples flip fewer top-1 classes of the float model's (or as
many, with a lower KL to them). Every expectation here is
recomputed with the independent float64 MP reference (tests/mp/mp_reference.py) and np.linalg.lstsq on a
one-layer net (MatMul + Add, gains as floats so no snapping is involved)."""
from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
from mp.mp_reference import y_mp
from onnx import TensorProto, helper, numpy_helper

from mpc.driver.compiler import Settings, compile_model

D, H = 12, 6
HOLD = 4   # every 4th calibration sample is held out


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    """build() once per (seed, n, span) in this module (the calibrations are cached too)."""
    made = {}

    def get(seed: int, n: int, span: float):
        if (seed, n, span) not in made:
            made[seed, n, span] = build(tmp_path_factory.mktemp(f"auto{seed}_{n}"), seed, n, span)
        return made[seed, n, span]
    return get


def build(d, seed: int, n: int, span: float):
    """A MatMul + Add layer whose weight rows have norms 2^-span .. 2^span, and n U(0, 1) samples."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(-1, 1, (D, H)) * 2.0 ** np.linspace(-span, span, H)
    b = rng.uniform(-0.1, 0.1, H)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["m"], name="fc"), helper.make_node("Add", ["m", "B"], ["out"])],
        "one_layer", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", D])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", H])],
        [numpy_helper.from_array(w.astype(np.float32), "W"), numpy_helper.from_array(b.astype(np.float32), "B")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), d / "m.onnx")
    x = rng.uniform(0, 1, (n, D)).astype(np.float32)
    np.savez(d / "calib.npz", input=x)
    f64 = lambda a: a.astype(np.float32).astype(np.float64)
    return str(d / "m.onnx"), str(d / "calib.npz"), f64(x), f64(w.T), f64(b)


@functools.cache
def calibrated(model: str, calib: str, mode: str):
    """(γ, c, per-channel scale, gains) of the one MP op after mp-calibrate{channel_scale=mode}."""
    passes = f"canonicalize,mp-rewrite,mp-calibrate{{gain=float,channel_scale={mode}}},dce"
    g = compile_model(model, Settings(target="mp", calib=calib, passes=passes, quiet=True)).graph
    (op,) = [op for op in g.ops if op.kind == "mp.dot"]
    w = g.weights[op.operands[1].name].astype(np.float64)
    return op.attrs.gamma, op.attrs.c, w, g.weights[op.operands[2].name].astype(np.float64)


def affine(y: np.ndarray, t: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """Each column of t fitted as a·y + b by lstsq on the rows `fit`, evaluated on every row."""
    out = np.empty_like(t)
    for h in range(t.shape[1]):
        a = np.stack([y[:, h], np.ones(len(y))], axis=1)
        out[:, h] = a @ np.linalg.lstsq(a[fit], t[fit, h], rcond=None)[0]
    return out


def kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    """Mean KL(softmax(p) || softmax(q)) over rows, in float64."""
    lp = p_logits - np.log(np.exp(p_logits - p_logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
        - p_logits.max(1, keepdims=True)
    lq = q_logits - np.log(np.exp(q_logits - q_logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
        - q_logits.max(1, keepdims=True)
    return float((np.exp(lp) * (lp - lq)).sum(1).mean())


def objective(want: np.ndarray, got: np.ndarray) -> tuple[int, float]:
    """(rows whose top-1 class differs from the float model's, KL): compared in that order."""
    return int((want.argmax(1) != got.argmax(1)).sum()), kl(want, got)


def reference_auto(x, w, b, gamma: float, c: float):
    """(expected scales, held-out layer SSE of each candidate, held-out (top-1 flips, logit KL) of each), from the
    definition: choose each channel's power of two on the kept samples, guard on the held-out ones."""
    n = len(x)
    held = np.arange(n) % HOLD == HOLD - 1
    t = x @ w.T
    sse = {k: ((affine(y_mp(x * c, w * 2.0 ** k / c, gamma), t, ~held) - t)[~held] ** 2).sum(0) for k in range(-3, 4)}
    ks = np.array(list(sse))
    stack = np.stack([sse[k] for k in ks])
    best = ks[np.argmin(stack, axis=0)]   # ties: the smaller power (argmin takes the first)
    cand = {"off": np.ones(H), "scaled": 2.0 ** best}
    ys = {name: y_mp(x * c, w * s[:, None] / c, gamma) for name, s in cand.items()}
    layer = {name: float(((affine(y, t, ~held) - t)[held] ** 2).sum()) for name, y in ys.items()}
    every = np.ones(n, bool)
    logit = {name: objective((t + b)[held], (affine(y, t, every) + b)[held]) for name, y in ys.items()}
    return cand, layer, logit


def scales_of(w_cal: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.abs(w_cal).sum(1) / np.abs(w).sum(1)


@pytest.mark.parametrize("seed,n,span", [(1, 120, 4.0), (3, 400, 6.0)])
def test_auto_keeps_what_lowers_the_held_out_objectives(problem, seed, n, span):
    """auto's scales are the reference's choice when both held-out checks prefer it, all ones otherwise;
    the held-out layer error and logit KL of auto's result are never above those without scales."""
    model, calib, x, w, b = problem(seed, n, span)
    gamma, c, w_auto, _ = calibrated(model, calib, "auto")
    cand, layer, logit = reference_auto(x, w, b, gamma, c)
    keep = layer["scaled"] < layer["off"] and logit["scaled"] < logit["off"]
    expected = cand["scaled"] if keep else cand["off"]
    np.testing.assert_allclose(scales_of(w_auto, w), expected, rtol=1e-6)
    chosen = "scaled" if keep else "off"
    assert layer[chosen] <= layer["off"] and logit[chosen] <= logit["off"]


def test_auto_equals_off_when_the_scales_do_not_help_the_logits(problem):
    """Seed 1, 120 samples, rows 2^-4 .. 2^4: the scales lower the layer's held-out error but raise the
    held-out logit KL (no top-1 flips either way); `on` moves channels, auto is exactly off."""
    model, calib, x, w, b = problem(1, 120, 4.0)
    gamma, c, _, _ = calibrated(model, calib, "off")
    _, layer, logit = reference_auto(x, w, b, gamma, c)
    assert layer["scaled"] < layer["off"] and logit["scaled"] > logit["off"]   # the extreme case really is one
    on, off, auto = (calibrated(model, calib, m) for m in ("on", "off", "auto"))
    assert not np.allclose(scales_of(on[2], w), 1)
    np.testing.assert_array_equal(auto[2], off[2])
    np.testing.assert_array_equal(auto[3], off[3])


def test_auto_equals_on_when_the_scales_clearly_help(problem):
    """On 400 samples with rows 2^-6 .. 2^6 both held-out checks prefer the scales, and the channels' choice
    without the held-out samples is the one made on all of them: auto is exactly on."""
    model, calib, x, w, b = problem(3, 400, 6.0)
    gamma, c, _, _ = calibrated(model, calib, "off")
    _, layer, logit = reference_auto(x, w, b, gamma, c)
    assert layer["scaled"] < layer["off"] and logit["scaled"] < logit["off"]
    on, auto = (calibrated(model, calib, m) for m in ("on", "auto"))
    np.testing.assert_array_equal(auto[2], on[2])
    np.testing.assert_array_equal(auto[3], on[3])
