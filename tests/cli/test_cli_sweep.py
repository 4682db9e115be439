"""`mpc sweep-gamma` writes a plain CSV over an exact grid of powers of two, with its notes in sweep.json."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from mpc.cli import main

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "models" / "digits_mlp.onnx"
MLP_DATA = ROOT / "examples" / "data" / "digits_test.npz"


def test_sweep_grid_is_exact_powers_of_two_and_csv_is_plain(tmp_path, capsys):
    with np.load(MLP_DATA) as f:
        np.savez(tmp_path / "d.npz", input=f["input"][:64], labels=f["labels"][:64])
    out = tmp_path / "sw"
    rc = main(["sweep-gamma", str(MLP), "--data", str(tmp_path / "d.npz"), "--calib", str(tmp_path / "d.npz"),
               "--min", "0.3", "--max", "3", "-o", str(out), "-q"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["sweep.csv", "sweep.json", "sweep.png"]
    text = (out / "sweep.csv").read_text()
    rows = list(csv.reader(text.splitlines()))
    assert rows[0] == ["gamma", "accuracy"]
    assert [r[0] for r in rows[1:]] == ["0.25", "0.5", "1.0", "2.0", "4.0"]
    assert all(0 <= float(r[1]) <= 1 for r in rows[1:]) and "#" not in text
    notes = json.loads((out / "sweep.json").read_text())
    assert sorted(notes) == ["calibrated_accuracy", "calibrated_gammas", "grid", "rows", "source_accuracy"]
    assert notes["grid"] == {"min": 0.25, "max": 4.0, "requested_min": 0.3, "requested_max": 3.0}
    assert [r["gamma"] for r in notes["rows"]] == [0.25, 0.5, 1.0, 2.0, 4.0]
    assert len(notes["calibrated_gammas"]) == 3   # one per Gemm of the MLP


def test_sweep_grid_is_capped(tmp_path, capsys):
    rc = main(["sweep-gamma", str(MLP), "--data", str(MLP_DATA), "--min", "1e-30", "--max", "1e30",
               "-o", str(tmp_path / "sw")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == ("mpc: error: the γ grid from 2^-100 to 2^100 has 201 points (at most 64): "
                   "narrow --min/--max\n")
