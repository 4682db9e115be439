"""Flag values are checked when the command line is parsed, before any work: each bad value is one
line naming the flag and the value, exit 2. `--debug` and `--progress` are accepted anywhere.
"""
from __future__ import annotations

import pytest
from cli_helpers import MLP, ROOT, error_line, run_cli

MLP_DATA = ROOT / "examples" / "data" / "digits_test.npz"


CONVERT_MP = ["convert", MLP, "--target", "mp", "--calib", MLP_DATA]
FINETUNE = ["finetune", MLP, "--target", "mp", "--data", MLP_DATA]
SWEEP = ["sweep-gamma", MLP, "--data", MLP_DATA]
VERIFY = ["verify", MLP, "--target", "float"]

BAD_VALUES = [  # argv (without -o), the whole message
    (CONVERT_MP + ["--gamma", "-1"], "argument --gamma: expected a finite number > 0, got '-1'"),
    (CONVERT_MP + ["--gamma", "0"], "argument --gamma: expected a finite number > 0, got '0'"),
    (CONVERT_MP + ["--gamma", "nan"], "argument --gamma: expected a finite number > 0, got 'nan'"),
    (CONVERT_MP + ["--gamma", "inf"], "argument --gamma: expected a finite number > 0, got 'inf'"),
    (CONVERT_MP + ["--gamma", "big"], "argument --gamma: expected a finite number > 0, got 'big'"),
    (CONVERT_MP + ["--gain-terms", "0"], "argument --gain-terms: expected an integer from 1 to 32, got '0'"),
    (CONVERT_MP + ["--gain-terms", "1.5"], "argument --gain-terms: expected an integer from 1 to 32, got '1.5'"),
    (CONVERT_MP + ["--seed", "-1"], "argument --seed: expected an integer from 0 to 4294967295, got '-1'"),
    (VERIFY + ["--samples", "0"], "argument --samples: expected an integer >= 1, got '0'"),
    (VERIFY + ["--samples", "-5"], "argument --samples: expected an integer >= 1, got '-5'"),
    (FINETUNE + ["--epochs", "0"], "argument --epochs: expected an integer >= 1, got '0'"),
    (FINETUNE + ["--batch-size", "-3"], "argument --batch-size: expected an integer >= 1, got '-3'"),
    (FINETUNE + ["--lr", "0"], "argument --lr: expected a finite number > 0, got '0'"),
    (FINETUNE + ["--lr", "nan"], "argument --lr: expected a finite number > 0, got 'nan'"),
    (FINETUNE + ["--distill", "1.5"], "argument --distill: expected a fraction in [0, 1] (0.9 for 90%), got '1.5'"),
    (FINETUNE + ["--distill", "nan"], "argument --distill: expected a fraction in [0, 1] (0.9 for 90%), got 'nan'"),
    (FINETUNE + ["--weight-decay", "-0.1"], "argument --weight-decay: expected a finite number >= 0, got '-0.1'"),
    (FINETUNE + ["--weight-decay", "inf"], "argument --weight-decay: expected a finite number >= 0, got 'inf'"),
    (SWEEP + ["--min", "0"], "argument --min: expected a finite number > 0, got '0'"),
    (SWEEP + ["--max", "inf"], "argument --max: expected a finite number > 0, got 'inf'"),
    (SWEEP + ["--min", "8", "--max", "2"], "--min (8) must be smaller than --max (2)"),
]


@pytest.mark.parametrize("argv,message", BAD_VALUES, ids=[" ".join(map(str, a[-2:])) for a, _ in BAD_VALUES])
def test_bad_flag_values_are_refused_before_any_work(tmp_path, capsys, monkeypatch, argv, message):
    def no_work(*a, **k):
        raise AssertionError("a model was loaded before the flags were checked")
    monkeypatch.setattr("mpc.frontend.load_onnx", no_work)
    rc, out, err = run_cli(capsys, *argv, "-o", tmp_path / "out")
    assert (rc, out) == (2, "")
    assert error_line(err) == message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_is_accepted_anywhere(tmp_path, capsys, where):
    argv = ["convert", MLP, "--target", "bogus", "-o", tmp_path / "out"]
    argv = ["--debug"] + argv if where == "before" else argv + ["--debug"]
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2
    assert "Traceback (most recent call last)" in err
    from mpc.driver.targets import TARGETS  # every registered target, whichever families are built
    known = ", ".join(sorted(TARGETS))
    assert err.splitlines()[-1] == f"mpc: error: unknown target 'bogus' (expected one of: {known})"


def test_debug_after_the_command_converts(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "convert", MLP, "--target", "float", "-o", tmp_path / "out", "-q", "--debug")
    assert (rc, err) == (0, "")


def test_progress_bars_only_on_a_terminal_or_with_progress(monkeypatch):
    from mpc.progress import progress_bar
    assert progress_bar(range(3), desc="t").disable   # pytest's stderr is not a terminal
    assert not progress_bar(range(3), desc="t", progress=True).disable
    assert progress_bar(range(3), desc="t", progress=True, quiet=True).disable
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert not progress_bar(range(3), desc="t").disable


def test_verify_json_with_progress_prints_only_json(capsys):
    rc, out, _ = run_cli(capsys, "verify", MLP, "--target", "float", "--samples", "8", "--json", "--progress")
    assert rc == 0 and out.startswith("{") and len(out.splitlines()) == 1
