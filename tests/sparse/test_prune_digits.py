"""lbi-prune on the shipped digits MLP (labels from the data file, accuracy of the source from
onnxruntime): 50% of the weights go for at most 0.5 points, and LBI beats plain magnitude pruning."""
import json

import numpy as np
import pytest
import torch

from mpc.cli import main
from mpc.data import Dataset
from mpc.ir import parse, run
from mpc.passmanager import PassContext, run_pipeline
from mpc.train.bregman import finetune_bregman

MODEL = "examples/models/digits_mlp.onnx"
TRAIN = "examples/data/digits_train.npz"
TEST = "examples/data/digits_test.npz"


def _verify(capsys, *flags):
    assert main(["verify", MODEL, "--target", "float", "--calib", TRAIN, "--data", TEST, "--json", "-q",
                 *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_lbi_at_half_sparsity_loses_at_most_half_a_point_and_beats_magnitude(capsys):
    lbi = _verify(capsys, "--prune", "lbi", "--sparsity", "0.5")
    mag = _verify(capsys, "--passes", "+lbi-prune{method=magnitude,sparsity=0.5,refit=false}")
    assert lbi["source_accuracy"] - lbi["converted_accuracy"] <= 0.005
    assert lbi["converted_accuracy"] >= mag["converted_accuracy"]


def test_bregman_finetuning_reports_the_true_active_ratio_and_keeps_zeros_sparse():
    text = """graph @g(%x: f32[N,8]) -> (%y: f32[N,3]) {
  weight @w1 : f32[8,16]
  weight @w2 : f32[16,3]
  %0 = nn.matmul(%x, @w1) : f32[N,16]
  %1 = nn.relu(%0) : f32[N,16]
  %y = nn.matmul(%1, @w2) : f32[N,3]
}"""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((8, 16)).astype(np.float32) * (rng.random((8, 16)) < 0.2)
    g = parse(text, {"w1": w1, "w2": rng.standard_normal((16, 3)).astype(np.float32)})
    x = rng.standard_normal((96, 8)).astype(np.float32)
    data = Dataset({"x": x}, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0), "toy")
    res = finetune_bregman(g, data, "linbreg", lam=10.0, epochs=2, lr=0.05, batch=32)
    mats = [g.weights[op.operands[1].name] for op in g.ops if op.kind == "nn.matmul"]
    active = sum(int(np.count_nonzero(m)) for m in mats) / sum(m.size for m in mats)
    assert res.history[-1]["active ratio"] == pytest.approx(active, abs=1e-6)
    # λ = 10 is far above what 6 steps of lr 0.05 accumulate: no zero weight of w1 may enter
    assert np.all(g.weights[g.ops[0].operands[1].name][w1 == 0] == 0)
    assert run(g, {"x": x})["y"].shape == (96, 3)
    run_pipeline(g, "fuse,dce", PassContext())


def test_cli_finetune_with_adabreg_writes_a_report_with_active_ratios(tmp_path, capsys):
    torch.manual_seed(0)
    out = tmp_path / "ft"
    assert main(["finetune", MODEL, "--target", "float", "--prune", "lbi", "--sparsity", "0.8", "--optimizer",
                 "adabreg", "--lbi-lambda", "0.1", "--epochs", "2", "--data", TRAIN, "-o", str(out), "-q"]) == 0
    report = json.loads((out / "report.json").read_text())
    hist = report["sections"]["Fine-tuning"]
    assert [h["epoch"] for h in hist] == [1, 2] and all(0 < h["active ratio"] < 1 for h in hist)
    assert report["pipeline"].startswith("canonicalize,lbi-prune{sparsity=0.8},fuse,dce")
