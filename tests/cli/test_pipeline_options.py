"""Target flags become pass options in the pipeline string, and the pipeline that report.json prints
is enough to reproduce the run: converting again with `--passes '<that pipeline>'` and no flags gives
the same bytes. Bad options given in `--passes` are refused before any work."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import MLP, ROOT
from cli_helpers import run_cli as cli

from mpc.ir import parse

TRAIN = ROOT / "examples" / "data" / "digits_train.npz"


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> Path:
    """The first 128 training samples (enough to calibrate, quick to run)."""
    path = tmp_path_factory.mktemp("calib") / "calib.npz"
    with np.load(TRAIN) as f:
        np.savez(path, input=f["input"][:128])
    return path


def test_flags_are_printed_as_options_and_the_report_pipeline_reproduces_the_run(tmp_path, capsys, calib):
    rc, _, err = cli(capsys, "convert", MLP, "--target", "mp", "--calib", calib, "--gamma", "8", "--gain-terms", "3",
                     "-o", tmp_path / "flags", "-q")
    assert rc == 0, err
    report = json.loads((tmp_path / "flags" / "report.json").read_text())
    pipeline = report["pipeline"]
    assert pipeline == "canonicalize,mp-rewrite,mp-calibrate{gamma=8.0,gain_terms=3},dce"
    assert f"pipeline: `{pipeline}`" in (tmp_path / "flags" / "report.md").read_text()
    text = (tmp_path / "flags" / "model.mpc").read_text()
    mp_ops = [op for op in parse(text, dict(np.load(tmp_path / "flags" / "weights.npz"))).ops
              if op.kind == "mp.dot"]
    assert len(mp_ops) == 3 and all((op.attrs.gamma, op.attrs.gain_terms) == (8.0, 3) for op in mp_ops)

    rc, _, err = cli(capsys, "convert", MLP, "--target", "mp", "--calib", calib, f"--passes={pipeline}",
                     "-o", tmp_path / "again", "-q")
    assert rc == 0, err
    assert json.loads((tmp_path / "again" / "report.json").read_text())["pipeline"] == pipeline
    for name in ("model.mpc", "weights.npz"):
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "flags" / name).read_bytes(), name


def test_without_flags_the_pipeline_is_the_targets(tmp_path, capsys, calib):
    rc, _, err = cli(capsys, "convert", MLP, "--target", "mp", "--calib", calib, "--gain", "float",
                     "-o", tmp_path / "o", "-q")
    assert rc == 0, err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["pipeline"] == "canonicalize,mp-rewrite,mp-calibrate{gain=float},dce"
    assert [p["name"] for p in report["passes"]][-2:] == ["mp-calibrate{gain=float}", "dce"]


@pytest.mark.parametrize("argv, message", [
    (["--passes=canonicalize,mp-rewrite,mp-calibrate{gamma=0},dce"],
     "mp-calibrate: option gamma must be a finite number > 0, got 0.0"),
    (["--passes=+mp-calibrate{gain_terms=40}"],
     "mp-calibrate: option gain_terms must be an integer from 1 to 32, got 40"),
    (["--passes=mp-rewrite,mp-calibrate{gain=fixed}"],
     "mp-calibrate.gain: expected one of ['shift-add', 'float'], got 'fixed'"),
    (["--passes=-mp-calibrate", "--gamma", "2"],
     ("--gamma sets option gamma of mp-calibrate, which the pipeline 'remove-identity,fold-constants,"
      "fold-batchnorm,gemm-to-matmul,fold-constants,dce,mp-rewrite,dce' does not run")),
])
def test_bad_options_are_refused_before_any_work(tmp_path, capsys, monkeypatch, argv, message):
    def no_work(*a, **k):
        raise AssertionError("a model was loaded before the options were checked")
    monkeypatch.setattr("mpc.frontend.load_onnx", no_work)
    rc, out, err = cli(capsys, "convert", MLP, "--target", "mp", *argv, "-o", tmp_path / "out")
    assert (rc, out, err) == (2, "", f"mpc: error: {message}\n")
    assert list(tmp_path.iterdir()) == []
