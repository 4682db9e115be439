"""lower-nlif against the dense ReLU network computed here in float64: the error falls to 0 with dt,
and the shipped digits MLP keeps its accuracy (source accuracy from onnxruntime)."""
from __future__ import annotations

import numpy as np
import pytest

from mpc.data import Dataset
from mpc.driver.compiler import Settings
from mpc.driver.verify import verify
from mpc.errors import UnsupportedOp
from mpc.ir import parse, run
from mpc.passmanager import PassContext, run_pipeline

from .test_lower_lif import DATA, MLP, MODELS, _weights

RNG = np.random.default_rng(8)


def dense(w, x):
    """The source network from its definition, float64."""
    h = np.maximum(x @ w["w0"] + w["b0"], 0)
    h = np.maximum(h @ w["w1"] + w["b1"], 0)
    return h @ w["w2"] + w["b2"]


def test_nlif_error_falls_to_zero_with_dt():
    w = _weights()
    x = RNG.random((64, 6))
    want = dense(w, x)
    errs = []
    for dt in (0.2, 0.02, 0.002):
        g = parse(MLP, w)
        run_pipeline(g, f"lower-nlif{{dt={dt!r},window=4.0}},dce", PassContext(dataset=Dataset({"x": x}, None, "x")))
        assert [op.kind for op in g.ops].count("snn.nlif") == 2
        errs.append(np.abs(run(g, {"x": x})["y"] - want).max())
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 0.01 * np.abs(want).max() and errs[0] > 20 * errs[2]   # about proportional to dt
    # one spike at most per neuron: the code is time to first spike
    spikes = run(g, {"x": x}, keep_all=True)
    for op in g.ops:
        if op.kind == "snn.nlif":
            assert spikes[op.result.name].sum(0).max() <= 1


def test_nlif_rejects_inputs_outside_the_code():
    g = parse(MLP, _weights())
    with pytest.raises(UnsupportedOp, match=r"codes inputs in \[0, 1\]; 'x' spans"):
        run_pipeline(g, "lower-nlif", PassContext(dataset=Dataset({"x": RNG.random((8, 6)) * 3 - 1}, None, "x")))


def test_shipped_mlp_keeps_its_accuracy():
    settings = Settings(target="nlif", quiet=True, calib=str(DATA / "digits_train.npz"),
                        passes="canonicalize,lower-nlif{dt=0.05},dce")
    r = verify(str(MODELS / "digits_mlp.onnx"), settings, str(DATA / "digits_test.npz"))
    assert r["source_accuracy"] - r["converted_accuracy"] <= 0.001
    assert r["top1_agreement"] >= 0.99
    assert all(row["pearson"] > 0.99 for row in r["spiking"]["layers"])
