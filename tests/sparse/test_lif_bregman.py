"""Bregman fine-tuning of a spiking (lif) network through the torch lowering: one LinBreg step checked
against the step written here by hand from the definition (v = θ + λ·sign θ, v ← v − lr·g,
θ = shrink(v, λ)) with the gradient from torch autograd on an independent lowering; pruned synapses
stay exactly zero where the accumulated step stays within λ. And the CLI path end to end."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mpc.backends import torch_backend as tb
from mpc.backends.torch_snn import surrogate
from snn.test_lower_lif import MLP, SIZES

from mpc.cli import main
from mpc.data import Dataset
from mpc.ir import parse
from mpc.passmanager import PassContext, run_pipeline
from mpc.train.spiking import finetune_snn

MODEL = "examples/models/digits_mlp.onnx"
TRAIN = "examples/data/digits_train.npz"


def _pruned_lif_graph(x):
    rng = np.random.default_rng(3)
    w = {}
    for i, (d, h) in enumerate(itertools.pairwise(SIZES)):
        w[f"w{i}"] = rng.standard_normal((d, h)) / np.sqrt(d) * (rng.random((d, h)) < 0.5)   # half pruned
        w[f"b{i}"] = rng.standard_normal(h) * 0.1
    g = parse(MLP, w)
    run_pipeline(g, "lower-lif{timesteps=8},dce", PassContext(dataset=Dataset({"x": x}, None, "x")))
    return g


def _shrink(v, lam):
    return np.sign(v) * np.maximum(np.abs(v) - lam, 0.0)


def test_one_linbreg_step_on_the_lif_lowering_matches_the_hand_computed_step():
    rng = np.random.default_rng(0)
    x = rng.random((64, SIZES[0]))
    labels = (x[:, :3].sum(1) > x[:, 3:].sum(1)).astype(np.int64) + (x[:, 0] > 0.8)
    g = _pruned_lif_graph(x)
    synapses = {op.operands[1].name for op in g.ops if op.kind == "nn.matmul" and op.operands[1].is_weight}
    before = {n: np.array(g.weights[n]) for n in g.used_weights()}
    module = tb.lower(g)   # independent lowering: the gradient of the mean cross entropy on the whole set
    with surrogate("fast-sigmoid", 5.0):
        loss = F.cross_entropy(module({"x": torch.from_numpy(x)})["y"], torch.from_numpy(labels))
    loss.backward()
    grads = {n: module.params[module.keys[n]].grad.numpy().copy() for n in before if module.keys[n] in module.params}
    lr = 0.5
    zero_steps = np.concatenate([np.abs(lr * grads[n][before[n] == 0]) for n in synapses])
    steps = np.unique(zero_steps[zero_steps > 0])
    lam = float(steps[len(steps) // 2 - 1:len(steps) // 2 + 1].mean())   # between two steps: half re-enter
    finetune_snn(g, Dataset({"x": x}, labels, "x"), epochs=1, lr=lr, batch=64, seed=0, quiet=True, slope=5.0,
                 optimizer="linbreg", lam=lam)
    entered = stayed = 0
    for n, w0 in sorted(before.items()):
        got = g.weights[f"{n}.ft"] if f"{n}.ft" in g.weights else g.weights[n]
        if n in synapses:
            want = _shrink(w0 + lam * np.sign(w0) - lr * grads[n], lam)
            entered += int(np.count_nonzero(want[w0 == 0]))
            stayed += int(np.sum((want == 0) & (w0 == 0)))
            assert np.all(got[(w0 == 0) & (np.abs(lr * grads[n]) <= lam)] == 0), n   # exactly zero, not tiny
        elif n in grads:
            want = w0 - lr * grads[n]
            want = np.maximum(want, 1e-3 * np.abs(w0)) if n.endswith("theta") else want   # threshold floor
        else:
            want = w0
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=n)
    assert entered > 0 and stayed > 0   # the test exercises both sides of the threshold


def test_cli_finetune_lif_with_adabreg_reports_active_ratio_and_synops(tmp_path):
    torch.manual_seed(0)
    out, data = tmp_path / "ft", tmp_path / "small.npz"
    with np.load(TRAIN) as d:   # 256 samples keep the test short
        np.savez(data, input=d["input"][:256], labels=d["labels"][:256])
    assert main(["finetune", MODEL, "--target", "lif", "--timesteps", "8", "--prune", "lbi", "--sparsity", "0.8",
                 "--optimizer", "adabreg", "--lbi-lambda", "10", "--epochs", "2", "--lr", "1e-3", "--data", str(data),
                 "-o", str(out), "-q"]) == 0
    report = json.loads((out / "report.json").read_text())
    hist = report["sections"]["Fine-tuning"]
    # λ = 10 against 8 AdaBreg steps of about lr each: no pruned weight may re-enter
    assert [h["epoch"] for h in hist] == [1, 2] and hist[-1]["active ratio"] == pytest.approx(0.2, abs=0.01)
    syn = report["sections"]["SynOps after fine-tuning"][0]
    assert 0 < syn["synops per inference"] < syn["dense fan-out"]
