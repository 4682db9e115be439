"""lower-lif against a float64 reference of rate conversion written here from its definition, and
end to end on the shipped digits models (source accuracy from onnxruntime)."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from mpc.data import Dataset
from mpc.driver.compiler import Settings
from mpc.driver.verify import verify
from mpc.ir import parse, run
from mpc.passmanager import PassContext, run_pipeline
from mpc.snn.report import spiking_report

ROOT = Path(__file__).resolve().parents[2]
MODELS, DATA = ROOT / "examples" / "models", ROOT / "examples" / "data"
RNG = np.random.default_rng(3)
SIZES = (6, 5, 4, 3)

MLP = """graph @mlp(%x: f64[N,6]) -> (%y: f64[N,3]) {
  weight @w0 : f64[6,5]
  weight @b0 : f64[5]
  weight @w1 : f64[5,4]
  weight @b1 : f64[4]
  weight @w2 : f64[4,3]
  weight @b2 : f64[3]
  %0 = nn.matmul(%x, @w0) : f64[N,5]
  %1 = nn.add(%0, @b0) : f64[N,5]
  %2 = nn.relu(%1) : f64[N,5]
  %3 = nn.matmul(%2, @w1) : f64[N,4]
  %4 = nn.add(%3, @b1) : f64[N,4]
  %5 = nn.relu(%4) : f64[N,4]
  %6 = nn.matmul(%5, @w2) : f64[N,3]
  %y = nn.add(%6, @b2) : f64[N,3]
}
"""


def _weights():
    w = {}
    for i, (d, h) in enumerate(itertools.pairwise(SIZES)):
        w[f"w{i}"] = RNG.standard_normal((d, h)) / np.sqrt(d)
        w[f"b{i}"] = RNG.standard_normal(h) * 0.1
    return w


def reference(w, calib, x, steps, q, per_channel):
    """Rate conversion from the definition: λ = percentile q of each ReLU's calibration activations,
    IF neurons with θ = λ, u_0 = θ/2, soft reset, inputs a constant current, next weights × λ,
    readout = mean membrane input of the last layer. Returns (outputs, spikes per layer)."""
    a, lams = calib, []
    for i in range(2):
        a = np.maximum(a @ w[f"w{i}"] + w[f"b{i}"], 0)
        lam = np.percentile(a, q, axis=0) if per_channel else np.full(a.shape[1], np.percentile(a, q))
        lams.append(lam)
    cur = np.broadcast_to(x @ w["w0"] + w["b0"], (steps,) + (len(x), 5))
    spikes = []
    for i, lam in enumerate(lams):
        u = 0.5 * lam * np.ones(cur.shape[1:])
        s = np.zeros(cur.shape)
        for t in range(steps):
            u = u + cur[t]
            s[t] = u >= lam
            u = u - lam * s[t]
        spikes.append(s)
        cur = (s * lam) @ w[f"w{i + 1}"] + w[f"b{i + 1}"]
    return cur.mean(0), spikes


@pytest.mark.parametrize("norm, q, granularity", [("p99.9", 99.9, "layer"), ("max", 100, "channel")])
def test_lower_lif_matches_reference_conversion(norm, q, granularity):
    w = _weights()
    calib, x = RNG.random((300, 6)), RNG.random((40, 6))
    g = parse(MLP, w)
    ctx = PassContext(dataset=Dataset({"x": calib}, None, "calib"))
    run_pipeline(g, f"lower-lif{{timesteps=24,norm={norm},granularity={granularity}}},dce", ctx)
    got = run(g, {"x": x})["y"]
    ref, spikes = reference(w, calib, x, 24, q, granularity == "channel")
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)
    assert [op.kind for op in g.ops].count("snn.lif") == 2
    # the cost report's SynOps: spikes × fan-out (each hidden spike reaches every unit of the next layer)
    report = spiking_report(g, parse(MLP, w), Dataset({"x": x}, None, "x"))
    want = (spikes[0].sum() * 4 + spikes[1].sum() * 3) / len(x)
    assert report["cost"]["synops"] == pytest.approx(want)
    assert report["cost"]["source_macs"] == 6 * 5 + 5 * 4 + 4 * 3
    assert report["cost"]["dense_macs"] == 6 * 5   # the first layer runs once on the constant current
    rates = [row["firing_rate"] for row in report["layers"]]
    np.testing.assert_allclose(rates, [s.mean() for s in spikes])


def test_lower_lif_error_falls_with_timesteps():
    w = _weights()
    calib, x = RNG.random((300, 6)), RNG.random((100, 6))
    dense = run(parse(MLP, w), {"x": x})["y"]
    errs = []
    for steps in (8, 64, 512):
        g = parse(MLP, w)
        run_pipeline(g, f"lower-lif{{timesteps={steps},norm=max}},dce",
                     PassContext(dataset=Dataset({"x": calib}, None, "calib")))
        errs.append(np.abs(run(g, {"x": x})["y"] - dense).mean())
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 0.01


@pytest.mark.parametrize("model, data, steps, max_drop", [("mlp", "", 32, 0.003), ("mlp", "", 8, 0.01),
                                                          ("cnn", "img_", 32, 0.01)])
def test_shipped_models_meet_the_accuracy_targets(model, data, steps, max_drop):
    settings = Settings(target="lif", quiet=True, calib=str(DATA / f"digits_{data}train.npz"),
                        passes=f"canonicalize,lower-lif{{timesteps={steps}}},dce")
    r = verify(str(MODELS / f"digits_{model}.onnx"), settings, str(DATA / f"digits_{data}test.npz"))
    assert r["source_accuracy"] - r["converted_accuracy"] <= max_drop
    layers = r["spiking"]["layers"]
    assert all(0 < row["firing_rate"] < 1 and row["pearson"] > 0.95 for row in layers)
