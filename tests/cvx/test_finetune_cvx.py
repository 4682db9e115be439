"""`mpc finetune --target lif --method cvx`: the written readout is the optimum of the convex problem over the
converted network's spike rates (checked against CVXPY + Clarabel on a dictionary rebuilt here from the
interpreter's spikes), the report carries the certificate, and bad input is one error line."""
from __future__ import annotations

import json
from pathlib import Path

import cvxpy as cp
import numpy as np
from cli_helpers import error_line, run_cli
from scipy.special import logsumexp

from mpc.ir import parse, run

ROOT = Path(__file__).resolve().parents[2]
MODELS, DATA = ROOT / "examples" / "models", ROOT / "examples" / "data"


def _subset(tmp_path: Path, n: int) -> Path:
    d = np.load(DATA / "digits_train.npz")
    path = tmp_path / "train.npz"
    np.savez(path, input=d["input"][:n], labels=d["labels"][:n])
    return path


def _load(out: Path):
    with np.load(out / "weights.npz") as f:
        return parse((out / "model.mpc").read_text(), {k: f[k] for k in f.files})


def _rates(graph, x):
    """Spike rates of the last snn.lif (the readout's input) and the logits, from the interpreter."""
    vals = run(graph, {"input": x}, keep_all=True)
    lif = [op for op in graph.ops if op.kind == "snn.lif"][-1]
    return vals[lif.results[0].name].mean(0).astype(np.float64), vals["logits"]


def test_readout_is_the_certified_optimum(tmp_path, capsys):
    train, out = _subset(tmp_path, 240), tmp_path / "out"
    rc, _, err = run_cli(capsys, "finetune", MODELS / "digits_mlp.onnx", "--target", "lif", "--timesteps", 4,
                         "--method", "cvx", "--cvx-lambda", "0.05", "--data", train, "-o", out, "-q")
    assert rc == 0, err
    rep = json.loads((out / "report.json").read_text())["sections"]["Readout repair"]
    assert rep["converged"] and rep["relative gap"] <= 1e-6 and rep["dual"] <= rep["primal"]
    g = _load(out)
    d = np.load(train)
    rates, logits = _rates(g, d["input"])
    phi = np.hstack([rates, np.ones((len(rates), 1))])            # β = 1: the bias column is 1
    y = np.eye(10)[d["labels"]]
    n, lam = len(y), rep["lambda"]
    b = cp.Variable((phi.shape[1], 10))
    z = phi @ b
    obj = (cp.sum(cp.log_sum_exp(z, axis=1)) - cp.sum(cp.multiply(y, z))) / n + lam * cp.sum(cp.norm(b, 2, axis=1))
    prob = cp.Problem(cp.Minimize(obj))
    prob.solve(solver=cp.CLARABEL)
    assert abs(rep["primal"] - prob.value) <= 1e-6 * prob.value
    # the written weights (float32) evaluated from the definition reach the optimum up to their rounding
    mm = next(op for op in g.ops if op.kind == "nn.matmul" and op.operands[1].name.endswith(".cvx"))
    add = next(op for op in g.ops if op.kind == "nn.add" and op.operands[1].name.endswith(".cvx"))
    w = np.vstack([g.weights[mm.operands[1].name], g.weights[add.operands[1].name][None]]).astype(np.float64)
    zz = phi @ w
    p = np.mean(logsumexp(zz, axis=1) - np.sum(y * zz, 1)) + lam * np.linalg.norm(w, axis=1).sum()
    assert abs(p - prob.value) <= 1e-4 * prob.value
    assert np.allclose(logits, zz, atol=1e-4)                 # the membrane readout is exactly φ W + b
    assert rep["train accuracy after"] == np.mean(logits.argmax(1) == d["labels"])
    assert rep["train accuracy after"] >= rep["train accuracy before"]


def test_cvx_needs_the_lif_target(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "finetune", MODELS / "digits_mlp.onnx", "--target", "mp", "--method", "cvx",
                         "--data", _subset(tmp_path, 20), "-o", tmp_path / "o", "-q")
    assert rc == 2 and error_line(err) == "--method cvx applies to --target lif only, got 'mp'"


def test_readout_must_read_lif_spikes(tmp_path, capsys):
    src = tmp_path / "m.mpc"
    src.write_text("graph @g(%input: f32[N,4]) -> (%logits: f32[N,4]) {\n  weight @w : f32[4,4]\n"
                   "  %logits = nn.matmul(%input, @w) : f32[N,4]\n}\n")
    np.savez(tmp_path / "weights.npz", w=np.eye(4, dtype=np.float32))
    data = tmp_path / "d.npz"
    np.savez(data, input=np.ones((8, 4), np.float32), labels=np.zeros(8, np.int64))
    rc, _, err = run_cli(capsys, "finetune", src, "--target", "lif", "--method", "cvx", "--timesteps", 4,
                         "--data", data, "-o", tmp_path / "o", "-q")
    assert rc == 2      # no neuron: the converted graph has no spiking readout to repair
    assert error_line(err).endswith("readout repair wants the output read by snn.decode mode membrane")
