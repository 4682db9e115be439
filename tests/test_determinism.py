"""The same model and flags give byte-identical output folders (principle 13), in-process and in a
fresh interpreter with a different hash seed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mpc.cli import main

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "examples" / "models"
DATA = ROOT / "examples" / "data"


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same_tree(a: Path, b: Path) -> None:
    ta, tb = tree(a), tree(b)
    assert sorted(ta) == sorted(tb)
    differ = [name for name in ta if ta[name] != tb[name]]
    assert not differ, f"files differ between two conversions: {differ}"


CASES = {
    "mlp-float": [str(MODELS / "digits_mlp.onnx"), "--target", "float", "--dump-ir-after", "all"],
    "cnn-float": [str(MODELS / "digits_cnn.onnx"), "--target", "float", "--dump-ir-after", "all"],
    "mlp-mp": [str(MODELS / "digits_mlp.onnx"), "--target", "mp", "--calib", str(DATA / "digits_train.npz")],
    "mlp-hopfield": [str(MODELS / "digits_mlp.onnx"), "--target", "hopfield", "--lambda", "0.25"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_converting_twice_gives_identical_folders(tmp_path, case):
    for name in ("a", "b"):
        assert main(["convert", *CASES[case], "-o", str(tmp_path / name), "-q"]) == 0
    assert tree(tmp_path / "a")   # not vacuous
    assert_same_tree(tmp_path / "a", tmp_path / "b")


def test_mp_conversion_is_identical_in_a_fresh_process(tmp_path):
    """Another interpreter, another hash seed, another working folder: the same bytes."""
    argv = ["convert", *CASES["mlp-mp"], "-q"]
    assert main([*argv, "-o", str(tmp_path / "here")]) == 0
    env = dict(os.environ, PYTHONHASHSEED="12345")
    work = tmp_path / "elsewhere"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-m", "mpc", *argv, "-o", "there"], cwd=work, env=env,
                          check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert_same_tree(tmp_path / "here", work / "there")
