"""The executors: results in the given order whichever executor ran them, one retry for a point whose
worker raised or died, and a point that fails twice reported by name with the others kept."""
from __future__ import annotations

import pytest

from mpc.driver.executor import ExecutorSpec, Outcome, Point, executor_spec, run_points
from mpc.errors import BadFlag

LOCAL, POOL = ExecutorSpec("local"), ExecutorSpec("process", jobs=2)


@pytest.mark.parametrize("spec", [LOCAL, POOL], ids=["local", "process"])
def test_outcomes_in_given_order(spec):
    points = [Point(f"x={x}", {"x": x}) for x in (5, 1, 4, 2, 3)]
    got = run_points("scale.tasks:square", points, spec)
    assert got == [Outcome(f"x={x}", x * x, None, 1) for x in (5, 1, 4, 2, 3)]


def test_dead_worker_is_retried(tmp_path):
    points = [Point(f"x={x}", {"x": x, "marker": str(tmp_path / f"m{x}")}) for x in (2, 3)]
    got = run_points("scale.tasks:die_once", points, POOL)
    assert [(o.name, o.value, o.error, o.attempts) for o in got] == [("x=2", 4, None, 2), ("x=3", 9, None, 2)]
    assert (tmp_path / "m2").read_text() == "died once\n"   # the first attempt really died


@pytest.mark.parametrize("spec", [LOCAL, POOL], ids=["local", "process"])
def test_point_failing_twice_is_reported_by_name(spec):
    points = [Point(f"x={x}", {"x": x, "bad": 2}) for x in (1, 2, 3)]
    got = run_points("scale.tasks:always_fails", points, spec)
    assert [o.value for o in got] == [1, None, 9]
    assert got[1].name == "x=2" and got[1].attempts == 2 and not got[1].ok
    assert got[1].error == "RuntimeError: point 2 is broken"


def test_point_names_must_be_distinct():
    with pytest.raises(ValueError):
        run_points("scale.tasks:square", [Point("a", {"x": 1}), Point("a", {"x": 2})], LOCAL)


class _Args:
    def __init__(self, executor=None, jobs=None, ray_address=None):
        self.executor, self.jobs, self.ray_address = executor, jobs, ray_address


def test_flags():
    assert executor_spec(_Args()) == ExecutorSpec("local", 1, None)
    assert executor_spec(_Args(jobs=3)) == ExecutorSpec("process", 3, None)
    assert executor_spec(_Args("ray", 2, "10.0.0.1:6379")) == ExecutorSpec("ray", 2, "10.0.0.1:6379")
    for bad in (_Args(jobs=0), _Args("local", 2), _Args("process", 2, "x:1")):
        with pytest.raises(BadFlag):
            executor_spec(bad)


def test_executor_flags_need_work_to_spread(capsys):
    from pathlib import Path

    from cli_helpers import error_line, run_cli
    mlp = Path(__file__).resolve().parents[2] / "examples" / "models" / "digits_mlp.onnx"
    rc, _, err = run_cli(capsys, "verify", mlp, "--target", "float", "--jobs", "2")
    assert rc == 2
    assert error_line(err) == "--executor, --jobs and --ray-address apply to --sweep-timesteps or a sharded --data DIR"
