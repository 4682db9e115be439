"""`mpc finetune`: trains the calibrated MP network in torch and writes a runnable folder."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from mpc.cli import main
from mpc.ir import parse
from mpc.ir.ops_mp import shift_add_terms

from .test_mp_target import MLP, MLP_DATA, ort_accuracy


def test_finetune_writes_a_runnable_multiplierless_model(tmp_path, capsys):
    out = tmp_path / "ft"
    assert main(["finetune", MLP, "--target", "mp", "--calib", MLP_DATA[0], "--data", MLP_DATA[0],
                 "-o", str(out), "-q"]) == 0
    text = (out / "model.mpc").read_text()
    weights = dict(np.load(out / "weights.npz"))
    g = parse(text, weights)             # verifies: every gain·γD/2 has at most gain_terms terms
    mp_ops = [op for op in g.ops if op.kind == "mp.dot"]
    assert len(mp_ops) == 3 and all(op.attrs.gain_terms == 2 for op in mp_ops)
    for op in mp_ops:
        scale = op.attrs.gamma * op.operands[1].type.shape[1] / 2
        assert all(shift_add_terms(float(v) * scale, 2) <= 2 for v in weights[op.operands[2].name])
    pred = tmp_path / "p.npz"
    assert main(["run", str(out), "--data", MLP_DATA[1], "-o", str(pred), "-q"]) == 0
    labels = np.load(MLP_DATA[1])["labels"]
    acc = float((np.load(pred)["logits"].argmax(1) == labels).mean())
    assert acc >= ort_accuracy(MLP, MLP_DATA[1]) - 0.01
    report = json.loads((out / "report.json").read_text())
    assert len(report["sections"]["Fine-tuning"]) == 10


def test_finetune_needs_labels_and_the_mp_target(tmp_path, capsys):
    x = np.load(MLP_DATA[0])["input"][:32]
    nolabels = tmp_path / "x.npz"
    np.savez(nolabels, input=x)
    assert main(["finetune", MLP, "--target", "mp", "--data", str(nolabels), "-o", str(tmp_path / "a"), "-q"]) == 2
    assert "labels" in capsys.readouterr().err
    assert main(["finetune", MLP, "--target", "float", "--data", MLP_DATA[0], "-o", str(tmp_path / "b"), "-q"]) == 2
    assert "--target mp" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_finetune_calibrates_on_its_training_data_by_default(tmp_path, capsys):
    """Without --calib, calibration uses the first 512 samples of --data: the calibration table
    equals a plain `convert --calib` on that slice, written out here; no U(0, 1) warning."""
    with np.load(MLP_DATA[0]) as f:
        assert len(f["labels"]) > 512
        np.savez(tmp_path / "first512.npz", input=f["input"][:512])
    capsys.readouterr()
    assert main(["finetune", MLP, "--target", "mp", "--data", MLP_DATA[0], "--epochs", "1",
                 "-o", str(tmp_path / "ft")]) == 0
    err = capsys.readouterr().err
    assert "U(0, 1)" not in err
    assert main(["convert", MLP, "--target", "mp", "--calib", str(tmp_path / "first512.npz"),
                 "-o", str(tmp_path / "cv"), "-q"]) == 0
    ft = json.loads((tmp_path / "ft" / "report.json").read_text())
    cv = json.loads((tmp_path / "cv" / "report.json").read_text())
    assert ft["sections"]["MP calibration"] == cv["sections"]["MP calibration"]
    assert ft["sections"]["Calibration data"] == f"the first 512 of 1257 samples of {MLP_DATA[0]} (--data)"
