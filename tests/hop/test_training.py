"""Training comparisons on digits from one random init, and the `mpc finetune --target hopfield` CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_helpers import MLP, ROOT, error_line, run_cli

from mpc.hop import analysis
from mpc.hop.graphio import mlp_graph
from mpc.train.hopfield import Adam, HopTrainConfig, compare

TRAIN = ROOT / "examples" / "data" / "digits_train.npz"
TEST = ROOT / "examples" / "data" / "digits_test.npz"


def test_numpy_adam_matches_torch_adam():
    rng = np.random.default_rng(0)
    p0, grads = rng.normal(size=(3, 4)), [rng.normal(size=(3, 4)) for _ in range(5)]
    opt, p = Adam([p0], 1e-2), [p0]
    tp = torch.tensor(p0, requires_grad=True)
    topt = torch.optim.Adam([tp], lr=1e-2)
    for g in grads:
        p = opt.step(p, [g])
        tp.grad = torch.tensor(g)
        topt.step()
    np.testing.assert_allclose(p[0], tp.detach().numpy(), rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def digits_runs():
    torch.set_num_threads(1)   # both sides single-threaded: the time ratio compares the methods, not BLAS
    tr, te = np.load(TRAIN), np.load(TEST)
    cfg = HopTrainConfig(epochs=12, lr=1e-3, batch=64, beta=0.1, free_iter=20, nudge_iter=10)
    runs = (("backprop", 0.5), ("dualprop", 0.5), ("ep", 1.0))
    res = compare(mlp_graph((64, 64, 10), seed=0), (tr["input"], tr["labels"]), (te["input"], te["labels"]), cfg,
                  runs)
    skew_cfg = HopTrainConfig(epochs=4, lr=1e-3, batch=64, beta=0.5, free_iter=150)
    res |= compare(mlp_graph((64, 64, 10), seed=0), (tr["input"], tr["labels"]), (te["input"], te["labels"]),
                   skew_cfg, (("dualprop", 0.0),))
    return res


def _final(res, key):
    return res[key][0].history[-1]["test accuracy"]


def test_dualprop_matches_backprop_on_digits_at_no_more_time_per_epoch(digits_runs):
    bp, dp = digits_runs["backprop@0.5"][0], digits_runs["dualprop@0.5"][0]
    assert _final(digits_runs, "backprop@0.5") > 0.93
    assert abs(_final(digits_runs, "dualprop@0.5") - _final(digits_runs, "backprop@0.5")) <= 0.005
    t_bp = np.median([r["seconds"] for r in bp.history])
    t_dp = np.median([r["seconds"] for r in dp.history])
    assert t_dp <= 1.5 * t_bp, (t_dp, t_bp)


def test_ep_is_within_two_points_of_backprop_on_digits(digits_runs):
    assert abs(_final(digits_runs, "ep@1") - _final(digits_runs, "backprop@0.5")) <= 0.02


def test_the_skew_symmetric_net_trains_and_stays_lipschitz_one(digits_runs):
    result, net = digits_runs["dualprop@0"]
    acc = [r["test accuracy"] for r in result.history]
    assert acc[-1] > 0.85 and acc[-1] > acc[0]
    w = analysis.assemble(net.sizes, *net.blocks())
    np.testing.assert_array_equal(w, -w.T)
    assert analysis.lipschitz(w)["equilibrium_lipschitz"] <= 1.0


def test_finetune_dualprop_writes_a_folder_whose_model_runs(tmp_path, capsys):
    out = tmp_path / "dp"
    rc, _, err = run_cli(capsys, "finetune", MLP, "--target", "hopfield", "--method", "dualprop", "--data", TRAIN,
                         "--epochs", "1", "--lr", "1e-4", "-o", out, "-q")
    assert rc == 0, err
    text = (out / "report.md").read_text()
    assert "## Fine-tuning (dualprop)" in text and "## Hopfield" in text
    rc, _, err = run_cli(capsys, "verify", out, "--source", MLP, "--data", TEST, "--min-agreement", "0.8", "-q")
    assert rc == 0, err


def test_verify_target_hopfield_is_within_1e_5_of_the_source(capsys):
    rc, out, err = run_cli(capsys, "verify", MLP, "--target", "hopfield", "--data", TEST, "--max-abs-err", "1e-5",
                           "-q", "--json")
    assert rc == 0, err
    result = json.loads(out)
    assert result["max_abs_err"] <= 1e-5 and result["top1_agreement"] == 1.0 and result["samples"] == 540


@pytest.mark.parametrize("argv,message", [
    (["--target", "hopfield", "--method", "ep"], "--method ep trains the symmetric net: it needs --lambda 1"),
    (["--target", "mp", "--method", "dualprop"], "--method and --beta apply to --target hopfield only"),
    (["--target", "hopfield", "--lambda", "2"], "argument --lambda: expected a number in [0, 1], got '2'"),
    (["--target", "hopfield", "--method", "sgd"], "argument --method: invalid choice: 'sgd'"),
    (["--target", "hopfield", "--learn-gamma"], "--learn-gamma applies to --target mp only"),
])
def test_finetune_flag_errors_are_one_line(tmp_path, capsys, argv, message):
    rc, _, err = run_cli(capsys, "finetune", MLP, *argv, "--data", TRAIN, "-o", tmp_path / "o", "--epochs", "1", "-q")
    assert rc == 2 and error_line(err).startswith(message), err


def test_convolutions_are_rejected_naming_the_op(tmp_path, capsys):
    cnn = ROOT / "examples" / "models" / "digits_cnn.onnx"
    rc, _, err = run_cli(capsys, "convert", cnn, "--target", "hopfield", "-o", tmp_path / "c", "-q")
    assert rc == 2
    assert "unsupported op 'nn.conv2d'" in error_line(err) and "im2col" in err
