"""lower-hopfield and the hop ops: the lowered net against onnxruntime and a float64 reference, the
relaxation's iteration counts, W_lambda's structure, the IR text, the Lipschitz bound, the NumPy backend."""
from __future__ import annotations

import importlib.util

import numpy as np
import onnxruntime as ort
import pytest
from cli_helpers import MLP, ROOT
from mpc.passes.lower_hopfield import LowerHopfieldOptions, lower_hopfield

from mpc.frontend import load
from mpc.hop import analysis
from mpc.hop import kernels as HK
from mpc.hop.graphio import mlp_graph
from mpc.ir import clone, parse, print_graph, run
from mpc.ir.ops_hop import couplings
from mpc.passmanager import PassContext, run_pipeline

DIGITS_TEST = ROOT / "examples" / "data" / "digits_test.npz"


def _lower(graph, lam=0.5, schedule="sweeps", ctx=None):
    g = clone(graph)
    run_pipeline(g, f"canonicalize,lower-hopfield{{lam={lam!r},schedule={schedule}}},dce", ctx)
    return g


def _reference(ws, bs, x):
    """The feedforward ReLU MLP in float64, from its definition (x W + b, relu between layers)."""
    h = np.asarray(x, np.float64)
    for k, (w, b) in enumerate(zip(ws, bs)):
        h = h @ np.asarray(w, np.float64) + b
        h = np.maximum(h, 0) if k < len(ws) - 1 else h
    return h


@pytest.mark.parametrize("schedule", ["sweeps", "jacobi"])
def test_lambda_half_equals_the_onnx_source_on_the_digits_mlp(schedule):
    x = np.load(DIGITS_TEST)["input"]
    want = ort.InferenceSession(str(MLP)).run(None, {"input": x})[0]
    g = _lower(load(str(MLP)).graph, schedule=schedule)
    assert [op.kind for op in g.ops] == ["hop.relax", "hop.readout"]
    got = run(g, {"input": x})["logits"]
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("seed,sizes", [(0, (7, 9, 5, 3)), (1, (4, 16, 16, 16, 16, 2)), (2, (3, 2, 6))])
def test_lambda_half_equals_a_float64_reference_on_random_deep_mlps(seed, sizes):
    g = mlp_graph(sizes, seed, np.float64)
    ws = [g.weights[f"fc{k}.w"] for k in range(len(sizes) - 1)]
    bs = [g.weights[f"fc{k}.b"] for k in range(len(sizes) - 1)]
    x = np.random.default_rng(seed).normal(size=(11, sizes[0]))
    for schedule in ("sweeps", "jacobi"):
        got = run(_lower(g, schedule=schedule), {"x": x})["y"]
        np.testing.assert_allclose(got, _reference(ws, bs, x), atol=1e-12, rtol=1e-12)


def _relax_args(g):
    op = g.ops[0]
    theta0, bias, *blocks = [np.asarray(g.weights[v.name]) for v in op.operands[1:]]
    return theta0, bias, blocks, op.attrs.sizes, [a.value for a in op.attrs.acts], couplings(op.attrs)


@pytest.mark.parametrize("sizes", [(5, 8, 3), (5, 8, 8, 8, 3)])
def test_feedforward_relaxation_takes_exactly_L_jacobi_iterations_and_one_sweep(sizes):
    g = _lower(mlp_graph(sizes, 3, np.float64))
    theta0, bias, blocks, sz, acts, pairs = _relax_args(g)
    x = np.random.default_rng(0).normal(size=(9, sizes[0]))
    layers = len(sizes) - 1
    _, iters, ok = HK.hop_relax_stats(x, theta0, bias, blocks, sz, acts, pairs, True, 0.0, 50)
    assert ok and iters == layers
    early, _, ok = HK.hop_relax_stats(x, theta0, bias, blocks, sz, acts, pairs, True, 0.0, layers - 1)
    assert not ok and HK.hop_residual(early, x, theta0, bias, blocks, sz, acts, pairs) > 1e-3
    s, iters, ok = HK.hop_relax_stats(x, theta0, bias, blocks, sz, acts, pairs, False, 0.0, 50)
    assert ok and iters == 1   # one layer-ordered Gauss-Seidel sweep = L layer updates
    assert HK.hop_residual(s, x, theta0, bias, blocks, sz, acts, pairs) == 0.0


@pytest.mark.parametrize("lam", [0.0, 0.25, 0.5, 1.0])
def test_w_lambda_is_theta_minus_theta_t_plus_2_lambda_theta_t(lam):
    sizes = (4, 6, 5, 3)
    src = mlp_graph(sizes, 5, np.float64)
    g = _lower(src, lam=lam)
    _, _, blocks, sz, _, pairs = _relax_args(g)
    w = analysis.assemble(sz, pairs, blocks)
    # theta from the source weights, placed by hand: layer k+1 <- k gets fc{k+1}.w^T
    off = np.concatenate([[0], np.cumsum(sizes[1:])])
    theta = np.zeros_like(w)
    for k in range(len(sizes) - 2):
        theta[off[k + 1]:off[k + 2], off[k]:off[k + 1]] = src.weights[f"fc{k + 1}.w"].T
    np.testing.assert_array_equal(w, theta - theta.T + 2 * lam * theta.T)
    if lam == 1.0:
        np.testing.assert_array_equal(w, w.T)
    if lam == 0.0:
        np.testing.assert_array_equal(w, -w.T)
    if lam == 0.5:
        assert not np.triu(w).any()


def test_the_ir_text_shows_the_block_structure_and_reads_back():
    g = _lower(load(str(MLP)).graph, lam=1.0)
    text = print_graph(g)
    assert 'blocks = ["1<0", "2<1", "0<1", "1<2"]' in text
    assert "weight @hop.w1_0 : f32[32,64]" in text and "weight @hop.w0_1 : f32[64,32]" in text
    assert "sizes = [64, 32, 10], acts = [relu, relu, identity]" in text and "lam = 1.0" in text
    assert len(text) < 2000   # the matrix itself is never printed
    weights = {w: g.weights[w] for w in g.used_weights()}
    assert print_graph(parse(text, weights)) == text


def test_skew_symmetric_equilibria_move_no_more_than_their_drive():
    # small skew W so the relaxation converges; |s1 - s2| <= |c1 - c2| per sample (the Lipschitz-1 claim)
    g = mlp_graph((6, 5, 4, 3), 7, np.float64)
    g = _lower(g, lam=0.0, schedule="jacobi")
    theta0, bias, blocks, sz, acts, pairs = _relax_args(g)
    blocks = [0.3 * b for b in blocks]
    w = analysis.assemble(sz, pairs, blocks)
    bound = analysis.lipschitz(w)
    assert bound["mu"] == 0.0 and bound["equilibrium_lipschitz"] == 1.0
    rng = np.random.default_rng(1)
    x1, x2 = rng.normal(size=(20, 6)), rng.normal(size=(20, 6))
    s1, _, ok1 = HK.hop_relax_stats(x1, theta0, bias, blocks, sz, acts, pairs, True, 1e-13, 5000)
    s2, _, ok2 = HK.hop_relax_stats(x2, theta0, bias, blocks, sz, acts, pairs, True, 1e-13, 5000)
    assert ok1 and ok2
    drive = np.linalg.norm((x1 - x2) @ theta0.T, axis=1)
    assert (np.linalg.norm(s1 - s2, axis=1) <= drive + 1e-9).all()
    assert (np.linalg.norm(s1 - s2, axis=1) / drive).max() > 0.6   # not vacuous: the bound is nearly reached


def test_the_report_gives_convergence_and_lipschitz_bounds():
    ctx = PassContext()
    g = clone(load(str(MLP)).graph)
    run_pipeline(g, "canonicalize", ctx)
    lower_hopfield(g, ctx, LowerHopfieldOptions(lam=0.5))
    sec = ctx.report.sections["Hopfield"]
    assert sec["iterations"] == 1 and sec["converged"] and sec["final_residual"] == 0.0
    w = analysis.assemble(sec["sizes"], couplings(g.ops[0].attrs), _relax_args(g)[2])
    assert sec["step_lipschitz"] == pytest.approx(np.linalg.svd(w, compute_uv=False)[0], rel=1e-9)


def test_the_numpy_backend_model_py_matches_onnxruntime(tmp_path):
    from mpc.backends import BACKENDS
    from mpc.backends.base import emit
    g = _lower(load(str(MLP)).graph, schedule="jacobi")
    emit(BACKENDS["numpy"], g, tmp_path, "hopfield", None, ())
    np.savez(tmp_path / "weights.npz", **{w: g.weights[w] for w in g.used_weights()})
    spec = importlib.util.spec_from_file_location("hop_model", tmp_path / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x = np.load(DIGITS_TEST)["input"]
    want = ort.InferenceSession(str(MLP)).run(None, {"input": x})[0]
    np.testing.assert_allclose(mod.run({"input": x})["logits"], want, atol=1e-5, rtol=0)
