"""`mpc verify OUTDIR --source MODEL`: check a converted folder (or its model.mpc) against the
original model in onnxruntime, taking the converted graph as it is (no pipeline, no recalibration).

Reference numbers come from onnxruntime on the source model and from the folder's own model.py
(`mpc run`), both computed here, not by verify.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from mpc.cli import main

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "models" / "digits_mlp.onnx"
CNN = ROOT / "examples" / "models" / "digits_cnn.onnx"
DATA = ROOT / "examples" / "data" / "digits_test.npz"


def cli(capsys, *argv):
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def error_line(err: str) -> str:
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("mpc: error: "), err
    return err[len("mpc: error: "):]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The MLP converted for float and for mp (calibrated on the test split) into two folders."""
    tmp = tmp_path_factory.mktemp("conv")
    assert main(["convert", str(MLP), "--target", "float", "-o", str(tmp / "float"), "-q"]) == 0
    assert main(["convert", str(MLP), "--target", "mp", "--calib", str(DATA), "-o", str(tmp / "mp"), "-q"]) == 0
    return tmp


def _reference(folder: Path, tmp: Path):
    """(source logits from onnxruntime, converted logits from the folder's model.py, labels)."""
    with np.load(DATA) as f:
        x, labels = f["input"], f["labels"]
    src = ort.InferenceSession(str(MLP), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert main(["run", str(folder), "--data", str(DATA), "-o", str(tmp / "pred.npz"), "--force", "-q"]) == 0
    with np.load(tmp / "pred.npz") as f:
        got = f["logits"]
    return src.astype(np.float64), got.astype(np.float64), labels


@pytest.mark.parametrize("target", ["float", "mp"])
@pytest.mark.parametrize("as_file", [False, True], ids=["folder", "model.mpc"])
def test_verify_folder_against_source(folders, tmp_path, capsys, target, as_file):
    folder = folders / target
    model = folder / "model.mpc" if as_file else folder
    rc, out, err = cli(capsys, "verify", model, "--source", MLP, "--data", DATA, "--json", "-q")
    assert (rc, err) == (0, ""), err
    r = json.loads(out)
    src, got, labels = _reference(folder, tmp_path)
    assert r["samples"] == len(labels) == 540
    assert r["source_accuracy"] == pytest.approx(float((src.argmax(1) == labels).mean()), abs=1e-12)
    err_ref = float(np.abs(got - src).max())
    assert r["max_abs_err"] == pytest.approx(err_ref, rel=1e-3, abs=1e-5)
    agree = float((got.argmax(1) == src.argmax(1)).mean())
    assert abs(r["top1_agreement"] - agree) <= 2 / 540   # interpreter vs model.py: a near tie may flip
    if target == "float":
        assert r["max_abs_err"] <= 2e-5 * max(1.0, float(np.abs(src).max())) and r["top1_agreement"] == 1.0
    else:
        assert r["max_abs_err"] > 1e-2   # the calibrated MP model as written, not a recalibrated copy
    assert r["layers"] == [] and "layers_note" in r


def test_verify_folder_table_says_what_was_compared(folders, capsys):
    rc, out, _ = cli(capsys, "verify", folders / "mp", "--source", MLP, "--samples", "16", "-q")
    assert rc == 0
    assert out.splitlines()[0].startswith(f"mpc verify: {folders / 'mp'} against {MLP} on 16 samples")
    assert "layers not compared" in out


@pytest.mark.parametrize("flag", [["--target", "mp"], ["--gamma", "1"], ["--calib", str(DATA)],
                                  ["--passes", "dce"], ["--emit", "numpy"], ["--dump-ir-after", "all"]])
def test_conversion_flags_refused_with_source(folders, capsys, flag):
    rc, _, err = cli(capsys, "verify", folders / "mp", "--source", MLP, *flag)
    assert rc == 2
    assert f"{flag[0]} does not apply with --source" in error_line(err)


def test_reconverting_a_converted_model_is_refused(folders, capsys):
    rc, _, err = cli(capsys, "verify", folders / "mp" / "model.mpc", "--target", "mp")
    assert rc == 2
    msg = error_line(err)
    assert "already converted" in msg and "--source" in msg


def test_target_still_required_without_source(capsys):
    rc, _, err = cli(capsys, "verify", MLP)
    assert rc == 2 and "--target" in error_line(err)


def test_source_that_does_not_match(folders, capsys, tmp_path):
    rc, _, err = cli(capsys, "verify", folders / "float", "--source", CNN, "--samples", "4")
    assert rc == 2
    assert "input" in error_line(err)
    rc, _, err = cli(capsys, "verify", tmp_path, "--source", MLP)
    assert rc == 2 and "not a converted output folder" in error_line(err)
