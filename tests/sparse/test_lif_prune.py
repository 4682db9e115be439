"""Pruned synapses feeding spiking neurons: lbi-prune's masks stay `sp.mask` ops through lower-lif (no
mask-specific spiking code), the spikes match a plain-Python IF network with the masks applied, written
here from the definition, and the cost report counts SynOps as spikes × non-zero fan-out."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from snn.test_lower_lif import MLP, SIZES  # the same tiny MLP as the lif conversion tests

from mpc.cli import main
from mpc.data import Dataset
from mpc.ir import parse, run
from mpc.passmanager import PassContext, run_pipeline
from mpc.snn.report import spiking_report

STEPS = 24


def _weights(rng):
    w = {}
    for i, (d, h) in enumerate(itertools.pairwise(SIZES)):
        w[f"w{i}"] = rng.standard_normal((d, h)) / np.sqrt(d)
        w[f"b{i}"] = rng.standard_normal(h) * 0.1 + 0.2
    return w


def _masked(graph) -> list[np.ndarray]:
    """The pruned weights W ⊙ M, read from the sp.mask ops (the pass's choice of masks is the input here)."""
    out = []
    for op in graph.ops:
        if op.kind == "sp.mask":
            w, m = (graph.weights[v.name] for v in op.operands)
            out.append(np.where(m, w, 0.0))
    return out


def if_reference(ws, bs, calib, x):
    """Rate conversion by hand: λ = max ReLU activation (calibration, pruned weights), IF neurons with
    θ = λ, u_0 = θ/2, soft reset, a constant input current, spikes × λ into the next masked layer."""
    a, lams = calib, []
    for w, b in zip(ws[:-1], bs[:-1]):
        a = np.maximum(a @ w + b, 0)
        lams.append(a.max())
    cur = [x @ ws[0] + bs[0]] * STEPS
    spikes = []
    for i, lam in enumerate(lams):
        u, s = np.full(cur[0].shape, 0.5 * lam), []
        for t in range(STEPS):
            u = u + cur[t]
            s.append((u >= lam).astype(np.float64))
            u = u - lam * s[-1]
        spikes.append(np.stack(s))
        cur = [(st * lam) @ ws[i + 1] + bs[i + 1] for st in s]
    return np.mean(cur, axis=0), spikes


def test_pruned_lif_net_matches_a_masked_if_reference_spike_for_spike():
    """Masks through lower-lif: spikes, outputs and SynOps against the hand-written masked IF network."""
    rng = np.random.default_rng(11)
    w = _weights(rng)
    calib, x = rng.random((300, 6)), rng.random((40, 6))
    g = parse(MLP, w)
    ctx = PassContext(dataset=Dataset({"x": calib}, None, "calib"))
    run_pipeline(g, "lbi-prune{sparsity=0.5}", ctx)
    ws = _masked(g)
    assert [int(np.count_nonzero(m)) for m in ws] == [15, 10, 6]   # half of 30, 20, 12 weights kept
    run_pipeline(g, f"lower-lif{{timesteps={STEPS},norm=max}},dce", ctx)
    assert [op.kind for op in g.ops].count("sp.mask") == 3   # masks survive the lowering untouched
    got = run(g, {"x": x}, keep_all=True)
    ref, spikes = if_reference(ws, [w["b0"], w["b1"], w["b2"]], calib, x)
    lif = [op for op in g.ops if op.kind == "snn.lif"]
    for op, s in zip(lif, spikes, strict=True):
        np.testing.assert_array_equal(got[op.result.name], s)
    assert all(0 < s.mean() < 1 for s in spikes)   # neither silent nor saturated: the check has teeth
    np.testing.assert_allclose(got["y"], ref, rtol=1e-9, atol=1e-9)
    # SynOps = Σ spikes × non-zero fan-out (a pruned synapse does no work)
    report = spiking_report(g, parse(MLP, w), Dataset({"x": x}, None, "x"))["cost"]
    want = sum((s.sum(axis=(0, 1)) * np.count_nonzero(wn, axis=1)).sum() for s, wn in zip(spikes, ws[1:]))
    dense = spikes[0].sum() * 4 + spikes[1].sum() * 3
    assert report["synops"] == pytest.approx(want / len(x), rel=1e-12)
    assert report["synops_dense_fan_out"] == pytest.approx(dense / len(x), rel=1e-12)
    assert report["synops"] < report["synops_dense_fan_out"]


def test_verify_lif_with_magnitude_pruning_end_to_end(capsys):
    """`mpc verify --target lif --prune magnitude --sparsity 0.5` on the digits MLP: within a point."""
    flags = ["verify", "examples/models/digits_mlp.onnx", "--target", "lif", "--calib", "examples/data/digits_train.npz",
             "--data", "examples/data/digits_test.npz", "--json", "-q"]
    assert main(flags + ["--prune", "magnitude", "--sparsity", "0.5"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["source_accuracy"] - r["converted_accuracy"] <= 0.01   # source accuracy: onnxruntime
    cost = r["spiking"]["cost"]
    assert 0.4 < cost["synops"] / cost["synops_dense_fan_out"] < 0.7   # half the weights gone, unevenly used


def _brute_fan_out(w, x_shape, pads, strides, group):
    """Per input unit: the (output channel, output position) pairs it reaches through a non-zero weight."""
    m, cg, kh, kw = w.shape
    _, h, wd = x_shape
    oh, ow = (h + pads[0] + pads[2] - kh) // strides[0] + 1, (wd + pads[1] + pads[3] - kw) // strides[1] + 1
    fan = np.zeros(x_shape, np.int64)
    for o, y, z, i, j in itertools.product(range(m), range(oh), range(ow), range(kh), range(kw)):
        r, q = y * strides[0] + i - pads[0], z * strides[1] + j - pads[1]
        for ci in range(cg):
            ch = (o // (m // group)) * cg + ci
            if 0 <= r < h and 0 <= q < wd and w[o, ci, i, j] != 0:
                fan[ch, r, q] += 1
    return fan


def test_conv_fan_out_counts_only_non_zero_weights():
    """The SynOps fan-out of a pruned grouped, strided, padded conv against a brute-force count."""
    from mpc.snn.report import fan_out
    rng = np.random.default_rng(5)
    w = rng.standard_normal((4, 2, 3, 3)) * (rng.random((4, 2, 3, 3)) < 0.4)
    text = """graph @c(%x: f64[N,4,6,5]) -> (%y: f64[N,4,3,3]) {
  weight @w : f64[4,2,3,3]
  %y = nn.conv2d(%x, @w) {strides = [2, 2], pads = [1, 1, 1, 1], group = 2} : f64[N,4,3,3]
}"""
    op = parse(text, {"w": w}).ops[0]
    np.testing.assert_array_equal(fan_out(op, w), _brute_fan_out(w, (4, 6, 5), (1, 1, 1, 1), (2, 2), 2))
    np.testing.assert_array_equal(fan_out(op), _brute_fan_out(np.ones_like(w), (4, 6, 5), (1, 1, 1, 1), (2, 2), 2))
