"""The Ray executor on a 2-worker local cluster (started once for the module: Ray starts slowly): a γ sweep
writes the same bytes as the local executor, and a point whose task fails twice is reported by name."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import ray  # the optional extra `ray`, also in the test extra
from cli_helpers import run_cli

from mpc.driver.executor import ExecutorSpec, Outcome, Point, run_points

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "models" / "digits_mlp.onnx"
TEST = ROOT / "examples" / "data" / "digits_test.npz"
RAY = ExecutorSpec("ray", 2)


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs whose workers can import this folder's task module."""
    tests = str(Path(__file__).resolve().parents[1])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": tests, "OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


def test_ray_sweep_gamma_csv_is_byte_identical(cluster, capsys, tmp_path):
    data = tmp_path / "d.npz"
    with np.load(TEST) as f:
        np.savez(data, input=f["input"][:48], labels=f["labels"][:48])
    common = ["sweep-gamma", MLP, "--data", data, "--calib", data, "--min", "0.5", "--max", "2", "-q"]
    rc, _, err = run_cli(capsys, *common, "-o", tmp_path / "local")
    assert rc == 0, err
    rc, _, err = run_cli(capsys, *common, "-o", tmp_path / "ray", "--executor", "ray")
    assert rc == 0, err
    for name in ("sweep.csv", "sweep.json", "sweep.png"):
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes(), name


def test_ray_retries_and_reports_failures(cluster, tmp_path):
    points = [Point(f"x={x}", {"x": x, "marker": str(tmp_path / f"m{x}")}) for x in (2, 3)]
    assert run_points("scale.tasks:die_once", points, RAY) == [Outcome("x=2", 4, None, 2), Outcome("x=3", 9, None, 2)]
    points = [Point(f"x={x}", {"x": x, "bad": 3}) for x in (1, 3, 4)]
    got = run_points("scale.tasks:always_fails", points, RAY)
    assert [o.value for o in got] == [1, None, 16]
    assert (got[1].name, got[1].attempts, got[1].error) == ("x=3", 2, "RuntimeError: point 3 is broken")
