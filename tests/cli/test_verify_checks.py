"""`mpc verify` as a gate: --max-abs-err, --min-agreement, --max-accuracy-drop and exit status 3.

The measured values come from verify's own JSON; the source accuracy in it is checked against
onnxruntime here, and the thresholds are placed on either side of the measured values.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from mpc.cli import main

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "models" / "digits_mlp.onnx"
DATA = ROOT / "examples" / "data" / "digits_test.npz"
MP = ["verify", MLP, "--target", "mp", "--calib", DATA, "--data", DATA]


def cli(capsys, *argv):
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def measured():
    """verify's JSON for the MP target on the digits MLP, without checks (capsys is per test)."""
    import onnxruntime as ort
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main([str(a) for a in MP] + ["--json", "-q"]) == 0
    r = json.loads(buf.getvalue())
    with np.load(DATA) as f:
        x, labels = f["input"], f["labels"]
    sess = ort.InferenceSession(str(MLP), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"input": x})[0]
    assert r["source_accuracy"] == pytest.approx(float((ref.argmax(1) == labels).mean()), abs=1e-12)
    assert r["checks"] == []
    return r


def test_all_checks_pass_exit_0(capsys, measured):
    drop = measured["source_accuracy"] - measured["converted_accuracy"]
    rc, out, err = cli(capsys, *MP, "--json", "-q", "--max-abs-err", measured["max_abs_err"] * 1.01,
                       "--min-agreement", measured["top1_agreement"] - 0.001, "--max-accuracy-drop", drop + 0.001)
    assert (rc, err) == (0, ""), err
    checks = json.loads(out)["checks"]
    assert [c["name"] for c in checks] == ["max_abs_err", "min_agreement", "max_accuracy_drop"]
    assert all(c["passed"] for c in checks)


def test_failed_agreement_exit_3_one_line_after_the_table(capsys, measured):
    assert measured["top1_agreement"] < 0.999
    rc, out, err = cli(capsys, *MP, "-q", "--min-agreement", 0.999)
    assert rc == 3
    assert "top-1 agreement" in out   # the table is printed as usual
    assert err == f"mpc: check failed: top-1 agreement {100 * measured['top1_agreement']:.2f}% < 99.90%\n"


def test_failed_checks_in_json(capsys, measured):
    drop = measured["source_accuracy"] - measured["converted_accuracy"]
    assert drop > 0.001
    rc, out, err = cli(capsys, *MP, "--json", "-q", "--max-abs-err", measured["max_abs_err"] / 2,
                       "--max-accuracy-drop", 0.001)
    assert rc == 3
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert not checks["max_abs_err"]["passed"] and not checks["max_accuracy_drop"]["passed"]
    assert checks["max_accuracy_drop"]["value"] == pytest.approx(drop)
    lines = err.splitlines()
    assert len(lines) == 2 and all(ln.startswith("mpc: check failed: ") for ln in lines), err
    assert lines[0].startswith("mpc: check failed: max abs err ")
    assert lines[1] == f"mpc: check failed: accuracy drop {100 * drop:.2f}% > 0.10%"


@pytest.mark.parametrize("argv, message", [
    (["--min-agreement", "90"], "argument --min-agreement: expected a fraction in [0, 1]"),
    (["--min-agreement", "nan"], "argument --min-agreement: expected a fraction in [0, 1]"),
    (["--max-abs-err", "-1"], "argument --max-abs-err: expected a finite number >= 0"),
    (["--max-accuracy-drop", "2"], "argument --max-accuracy-drop: expected a fraction in [0, 1]"),
    (["--max-accuracy-drop", "0.01", "--samples", "8"], "--max-accuracy-drop needs labels"),
])
def test_bad_thresholds_are_user_errors(capsys, argv, message):
    rc, out, err = cli(capsys, "verify", MLP, "--target", "float", *argv)
    assert rc == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"mpc: error: {message}"), err


def test_accuracy_drop_without_labels_in_data(tmp_path, capsys):
    with np.load(DATA) as f:
        np.savez(tmp_path / "x.npz", input=f["input"][:20])
    rc, _, err = cli(capsys, "verify", MLP, "--target", "float", "--data", tmp_path / "x.npz",
                     "--max-accuracy-drop", "0.01")
    assert rc == 2 and err.startswith("mpc: error: --max-accuracy-drop needs labels"), err


def test_exit_codes_documented_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    out = capsys.readouterr().out
    assert "exit status" in out and "3" in out and "check failed" in out
