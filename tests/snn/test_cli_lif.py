"""The lif target through the command line: model.py runs the spiking network, conversions are
byte-identical, bad input is one error line, and --sweep-timesteps writes its CSV and PNG."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
from cli_helpers import error_line, run_cli
from test_determinism import assert_same_tree

from mpc.ir import parse, run

ROOT = Path(__file__).resolve().parents[2]
MODELS, DATA = ROOT / "examples" / "models", ROOT / "examples" / "data"


def _load_model_py(folder: Path):
    spec = importlib.util.spec_from_file_location(f"model_{folder.name}", folder / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_model_py_runs_the_lif_mlp_like_the_interpreter(tmp_path, capsys):
    out = tmp_path / "mlp"
    rc, _, err = run_cli(capsys, "convert", MODELS / "digits_mlp.onnx", "--target", "lif", "--timesteps", 16,
                         "--calib", DATA / "digits_train.npz", "-o", out, "-q")
    assert rc == 0, err
    data = np.load(DATA / "digits_test.npz")
    x = data["input"][:200]
    got = _load_model_py(out).run({"input": x})["logits"]
    with np.load(out / "weights.npz") as f:
        g = parse((out / "model.mpc").read_text(), {k: f[k] for k in f.files})
    ref = run(g, {"input": x})["logits"]
    # compiled matmuls may sum in another order than NumPy: a membrane a rounding error away from θ may
    # spike one step apart, so the logits agree closely but not bit for bit
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.98
    assert np.abs(got - ref).mean() < 0.05
    assert "= snn_chain(" in (out / "model.py").read_text()   # the numpy lowering fuses the MLP (snn-chain)


def test_lif_conversion_is_deterministic(tmp_path, capsys):
    for name in ("a", "b"):
        rc, _, err = run_cli(capsys, "convert", MODELS / "digits_mlp.onnx", "--target", "lif", "--norm", "max",
                             "--norm-granularity", "channel", "--calib", DATA / "digits_train.npz",
                             "-o", tmp_path / name, "-q")
        assert rc == 0, err
    assert_same_tree(tmp_path / "a", tmp_path / "b")


def test_unsupported_op_is_one_error_line(tmp_path, capsys):
    src = tmp_path / "sig.mpc"
    src.write_text("graph @g(%x: f32[N,4]) -> (%y: f32[N,4]) {\n  %y = nn.sigmoid(%x) : f32[N,4]\n}\n")
    (tmp_path / "weights.npz").write_bytes(b"")
    np.savez(tmp_path / "weights.npz")
    rc, _, err = run_cli(capsys, "convert", src, "--target", "lif", "-o", tmp_path / "out", "-q")
    assert rc == 0   # no neuron and no spikes: the graph passes through
    src.write_text("graph @g(%x: f32[N,4]) -> (%y: f32[N,4]) {\n  %0 = nn.relu(%x) : f32[N,4]\n"
                   "  %y = nn.sigmoid(%0) : f32[N,4]\n}\n")
    rc, _, err = run_cli(capsys, "convert", src, "--target", "lif", "-o", tmp_path / "out2", "-q")
    assert rc == 2
    assert error_line(err).startswith("unsupported op 'nn.sigmoid' at ") and "sig.mpc:3:3:" in err


def test_bad_sweep_flags_fail_before_work(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "verify", MODELS / "digits_mlp.onnx", "--target", "lif", "--data",
                         DATA / "digits_test.npz", "--sweep-timesteps", "4,x", "-o", tmp_path / "s")
    assert rc == 2 and "expected comma-separated integers" in error_line(err)
    rc, _, err = run_cli(capsys, "verify", MODELS / "digits_mlp.onnx", "--target", "mp",
                         "--sweep-timesteps", "4", "-o", tmp_path / "s")
    assert rc == 2 and "needs --target lif" in error_line(err)
    rc, _, err = run_cli(capsys, "convert", MODELS / "digits_mlp.onnx", "--target", "lif", "--norm", "p50",
                         "-o", tmp_path / "t")
    assert rc == 2 and "--norm" in error_line(err)


def test_sweep_timesteps_writes_csv_and_png(capsys, tmp_path):
    out = tmp_path / "sweep"
    rc, stdout, err = run_cli(capsys, "verify", MODELS / "digits_mlp.onnx", "--target", "lif", "--calib",
                              DATA / "digits_train.npz", "--data", DATA / "digits_test.npz", "--sweep-timesteps",
                              "2,32", "-o", out, "-q")
    assert rc == 0, err
    lines = (out / "timesteps.csv").read_text().splitlines()
    assert lines[0] == "timesteps,accuracy" and [ln.split(",")[0] for ln in lines[1:]] == ["2", "32", "source"]
    acc = {ln.split(",")[0]: float(ln.split(",")[1]) for ln in lines[1:]}
    assert acc["2"] < acc["32"] <= acc["source"] + 0.01
    assert (out / "timesteps.png").read_bytes()[:4] == b"\x89PNG"
    assert "neuron layer" in stdout and "SynOps" in stdout
    sys.stdout.flush()
