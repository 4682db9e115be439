"""Helpers shared by the CLI tests: run `mpc.cli.main` as a user would and read its one error line."""
from __future__ import annotations

from pathlib import Path

from mpc.cli import main

ROOT = Path(__file__).resolve().parents[1]
MLP = ROOT / "examples" / "models" / "digits_mlp.onnx"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `mpc ARGV` (arguments turned into strings)."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def error_line(err: str) -> str:
    """The message of the single `mpc: error: ...` line that stderr must be."""
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mpc: error: "), err
    return lines[0][len("mpc: error: "):]
