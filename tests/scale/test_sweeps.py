"""Sweeps through the executors: `mpc sweep-gamma` and `mpc verify --sweep-timesteps` write byte-identical
files with the local executor and a 2-process pool, and a point that fails twice is reported by name (exit
3) with the other points written."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli

from mpc.driver.compiler import Settings
from mpc.driver.executor import ExecutorSpec
from mpc.driver.sweep import accuracy, sweep_option
from mpc.frontend import load

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "models" / "digits_mlp.onnx"
TEST = ROOT / "examples" / "data" / "digits_test.npz"


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """48 labelled digits: enough for distinct accuracies, small enough to be quick."""
    path = tmp_path_factory.mktemp("scale") / "d.npz"
    with np.load(TEST) as f:
        np.savez(path, input=f["input"][:48], labels=f["labels"][:48])
    return path


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_sweep_gamma_process_pool_is_byte_identical(capsys, tmp_path, small):
    common = ["sweep-gamma", MLP, "--data", small, "--calib", small, "--min", "0.5", "--max", "2", "-q"]
    rc, _, err = run_cli(capsys, *common, "-o", tmp_path / "local")
    assert rc == 0, err
    rc, _, err = run_cli(capsys, *common, "-o", tmp_path / "pool", "--executor", "process", "--jobs", "2")
    assert rc == 0, err
    local = _tree(tmp_path / "local")
    assert sorted(local) == ["sweep.csv", "sweep.json", "sweep.png"]
    assert local == _tree(tmp_path / "pool")
    assert [ln.split(",")[0] for ln in local["sweep.csv"].decode().splitlines()] == ["gamma", "0.5", "1.0", "2.0"]


def test_sweep_timesteps_process_pool_is_byte_identical(capsys, tmp_path, small):
    common = ["verify", MLP, "--target", "lif", "--calib", small, "--data", small, "--sweep-timesteps", "2,8", "-q"]
    rc, _, err = run_cli(capsys, *common, "-o", tmp_path / "local")
    assert rc == 0, err
    rc, _, err = run_cli(capsys, *common, "-o", tmp_path / "pool", "--jobs", "2")
    assert rc == 0, err
    assert _tree(tmp_path / "local") == _tree(tmp_path / "pool")


def test_failing_point_is_reported_and_others_kept(small):
    settings = Settings(target="mp", calib=str(small), quiet=True)
    values = [0.5, 1.0, 2.0]
    loaded, data, rows, outcomes = sweep_option(
        str(MLP), settings, str(small), "sweep-gamma", "mp-calibrate", "gamma", values,
        ExecutorSpec("process", 2), task="scale.tasks:sweep_point_failing_1")
    assert [o.name for o in outcomes if not o.ok] == ["gamma=1.0"]
    assert outcomes[1].attempts == 2 and outcomes[1].error == "RuntimeError: injected failure"
    assert [r["gamma"] for r in rows] == [0.5, 2.0]
    # the kept points are the real accuracies: recompute one independently of the executor
    from mpc.driver.compiler import compile_model, pipeline_for
    from mpc.ir import clone
    from mpc.passmanager import set_options
    fixed = dataclasses.replace(settings, passes=set_options(pipeline_for(settings), {"mp-calibrate": {"gamma": 2.0}}))
    c = compile_model(str(MLP), fixed, loaded=dataclasses.replace(loaded, graph=clone(load(str(MLP)).graph)))
    assert rows[1]["accuracy"] == accuracy(c.graph, data)
