"""Data files are checked when they are read, by every command that reads one (--data, --calib, run's
--data), and by the emitted model.py on its own: NaN/inf inputs, plain .npy files and empty data are
refused with one line naming the file and the input.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import MLP, ROOT, error_line, run_cli

from mpc.cli import main


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("conv") / "mlp"
    assert main(["convert", str(MLP), "--target", "float", "-o", str(out), "-q"]) == 0
    return out


def _bad_data(tmp: Path, value: float) -> Path:
    x = np.random.default_rng(0).uniform(0, 1, (8, 64)).astype(np.float32)
    x[3, 5] = value
    path = tmp / "bad.npz"
    np.savez(path, input=x, labels=np.zeros(8, np.int64))
    return path


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("command", ["verify", "calib", "run", "finetune", "sweep-gamma"])
def test_nan_or_inf_in_data_is_refused(tmp_path, capsys, outdir, command, value):
    data = _bad_data(tmp_path, value)
    argv = {"verify": ["verify", MLP, "--target", "float", "--data", data],
            "calib": ["convert", MLP, "--target", "mp", "--calib", data, "-o", tmp_path / "out"],
            "run": ["run", outdir, "--data", data, "-o", tmp_path / "pred.npz"],
            "finetune": ["finetune", MLP, "--target", "mp", "--calib", data, "--data", data, "-o", tmp_path / "out"],
            "sweep-gamma": ["sweep-gamma", MLP, "--data", data, "-o", tmp_path / "out"]}[command]
    rc, out, err = run_cli(capsys, *argv)
    assert (rc, out) == (2, "")
    assert error_line(err) == f"{data}: input 'input' contains NaN or infinite values (first at sample 3)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]


def test_plain_npy_is_refused(tmp_path, capsys):
    path = tmp_path / "plain.npy"
    np.save(path, np.zeros((4, 64), np.float32))
    rc, _, err = run_cli(capsys, "verify", MLP, "--target", "float", "--data", path)
    assert rc == 2
    assert error_line(err) == (f"{path}: a single .npy array, not an .npz keyed by input name "
                               f"(save it with numpy.savez(PATH, x=array))")


def test_empty_data_is_refused(tmp_path, capsys):
    path = tmp_path / "empty.npz"
    np.savez(path, input=np.zeros((0, 64), np.float32))
    rc, _, err = run_cli(capsys, "verify", MLP, "--target", "float", "--data", path)
    assert rc == 2
    assert error_line(err) == f"{path}: input 'input' has no samples"


def _model_py(outdir: Path, tmp: Path, *argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(outdir / "model.py"), *map(str, argv)], cwd=tmp, check=False,
                          capture_output=True, text=True, timeout=300)


def test_model_py_refuses_nan_and_bad_files_in_one_line(tmp_path, outdir):
    from mpc.data import npz_bytes
    x = np.ones((2, 64), np.float32)
    x[1, 0] = np.nan
    (tmp_path / "nan.npz").write_bytes(npz_bytes({"input": x}))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    cases = [(["nan.npz"], "model.py: error: input 'input' contains NaN or infinite values (first at sample 1)"),
             (["missing.npz"], "model.py: error: missing.npz: no such file"),
             (["junk.npz"], "model.py: error: junk.npz: not a readable .npz file"),
             (["nan.npz", "--bogus"], None)]
    for argv, message in cases:
        proc = _model_py(outdir, tmp_path, *argv)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        if message:
            assert proc.stderr.splitlines() == [message]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.npz", "nan.npz"]


def test_model_py_run_refuses_nan_input(outdir):
    import importlib.util
    spec = importlib.util.spec_from_file_location("model", outdir / "model.py")
    model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model)
    with pytest.raises(ValueError, match=r"^input 'input' contains NaN or infinite values \(first at sample 0\)$"):
        model.run({"input": np.full((1, 64), np.inf, np.float32)})


def test_model_py_never_overwrites_without_force_and_never_its_input(tmp_path, outdir):
    """model.py as a script writes its output atomically, replaces a file only with --force, and never
    writes over the data it reads; the written outputs equal run() on the same data."""
    import onnxruntime as ort
    with np.load(ROOT / "examples" / "data" / "digits_test.npz") as f:
        np.savez(tmp_path / "data.npz", input=f["input"][:5])
    (tmp_path / "pred.npz").write_bytes(b"a user's file")
    r = _model_py(outdir, tmp_path, "data.npz", "-o", "pred.npz")
    assert (r.returncode, r.stderr) == (2, "model.py: error: output 'pred.npz' already exists "
                                            + "(use --force to overwrite)\n")
    assert (tmp_path / "pred.npz").read_bytes() == b"a user's file"
    r = _model_py(outdir, tmp_path, "data.npz", "-o", "data.npz", "--force")
    assert (r.returncode, r.stderr) == (2, "model.py: error: output 'data.npz' is the input data file\n")
    r = _model_py(outdir, tmp_path, "data.npz", "-o", "pred.npz", "--force")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz", "pred.npz"]   # no temporary file left
    with np.load(tmp_path / "pred.npz") as got, np.load(tmp_path / "data.npz") as d:
        sess = ort.InferenceSession(str(MLP), providers=["CPUExecutionProvider"])
        ref = sess.run(None, {sess.get_inputs()[0].name: d["input"]})[0]
        np.testing.assert_allclose(got["logits"], ref, rtol=2e-5, atol=2e-5)
