"""Output paths: a folder or file that is (or holds) an input of the command, or the current folder,
is refused with or without --force; unwritable or missing parents are one-line errors; a failed
write or swap leaves nothing behind; outputs get the user's umask.
"""
from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import MLP, ROOT, error_line, run_cli

from mpc.cli import main

MLP_DATA = ROOT / "examples" / "data" / "digits_test.npz"


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def work(tmp_path, monkeypatch):
    """tmp_path as the current folder, holding a copy of the MLP and its data, and a converted folder."""
    shutil.copy(MLP, tmp_path / "mlp.onnx")
    shutil.copy(MLP_DATA, tmp_path / "data.npz")
    monkeypatch.chdir(tmp_path)
    assert main(["convert", "mlp.onnx", "--target", "float", "-o", "conv", "-q"]) == 0
    return tmp_path


@pytest.mark.parametrize("force", [[], ["--force"]])
@pytest.mark.parametrize("argv,message", [
    (["convert", "mlp.onnx", "--target", "float", "-o", "."],
     "output folder '.' is the current folder or holds it: choose a new folder"),
    (["convert", "mlp.onnx", "--target", "float", "-o", ".."],
     "output folder '..' is the current folder or holds it: choose a new folder"),
    (["convert", "models/mlp.onnx", "--target", "float", "-o", "models"],
     "output folder 'models' holds the input 'models/mlp.onnx': choose another folder"),
    (["convert", "mlp.onnx", "--target", "mp", "--calib", "models/mlp.onnx", "-o", "models"],
     "output folder 'models' holds the input 'models/mlp.onnx': choose another folder"),
    (["convert", "conv/model.mpc", "--target", "float", "-o", "conv"],
     "output folder 'conv' holds the input 'conv/model.mpc': choose another folder"),
    (["sweep-gamma", "mlp.onnx", "--data", "models/mlp.onnx", "-o", "models"],
     "output folder 'models' holds the input 'models/mlp.onnx': choose another folder"),
    (["finetune", "mlp.onnx", "--target", "mp", "--data", "models/mlp.onnx", "-o", "models"],
     "output folder 'models' holds the input 'models/mlp.onnx': choose another folder"),
    (["run", "conv", "--data", "data.npz", "-o", "data.npz"], "output 'data.npz' is the input 'data.npz': choose another path"),
    (["run", "conv", "--data", "data.npz", "-o", "conv/weights.npz"],
     "output 'conv/weights.npz' is the input 'conv/weights.npz': choose another path"),
])
def test_outputs_never_replace_inputs(work, capsys, argv, message, force):
    (work / "models").mkdir()
    shutil.copy(work / "mlp.onnx", work / "models" / "mlp.onnx")
    before = listing(work)
    rc, out, err = run_cli(capsys, *argv, *force)
    assert (rc, out) == (2, "")
    assert error_line(err) == message
    assert listing(work) == before


def test_run_output_in_a_missing_folder(work, capsys):
    rc, _, err = run_cli(capsys, "run", "conv", "--data", "data.npz", "-o", "nodir/pred.npz", "-q")
    assert rc == 2
    assert error_line(err) == "cannot write 'nodir/pred.npz': no such folder 'nodir'"
    assert not (work / "nodir").exists()


def _unwritable(*_, **__):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))


def test_run_output_on_a_read_only_filesystem(work, capsys, monkeypatch):
    before = listing(work)
    monkeypatch.setattr("tempfile.mkstemp", _unwritable)
    rc, _, err = run_cli(capsys, "run", "conv", "--data", "data.npz", "-o", "pred.npz", "-q")
    assert rc == 2
    assert error_line(err) == "cannot write 'pred.npz': Read-only file system"
    assert listing(work) == before


def test_convert_into_a_read_only_folder(work, capsys, monkeypatch):
    before = listing(work)
    monkeypatch.setattr("tempfile.mkdtemp", _unwritable)
    rc, _, err = run_cli(capsys, "convert", "mlp.onnx", "--target", "float", "-o", "ro/out", "-q")
    assert rc == 2
    assert error_line(err) == "cannot create output folder 'ro/out': Read-only file system"
    assert listing(work) == before   # the missing parent made on the way is gone too


def _writable(folder: str) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not Path("/sys").is_dir() or _writable("/sys"), reason="needs an unwritable /sys")
def test_run_output_in_an_unwritable_real_folder(work, capsys):
    rc, _, err = run_cli(capsys, "run", "conv", "--data", "data.npz", "-o", "/sys/pred.npz", "-q")
    assert rc == 2
    assert error_line(err).startswith("cannot write '/sys/pred.npz': ")


def test_a_failed_swap_puts_the_old_folder_back(work, capsys, monkeypatch):
    (work / "out").mkdir()
    (work / "out" / "keep.txt").write_text("mine")
    real = os.replace
    calls = []

    def second_fails(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        return real(src, dst)
    monkeypatch.setattr("os.replace", second_fails)
    rc, _, err = run_cli(capsys, "convert", "mlp.onnx", "--target", "float", "-o", "out", "--force", "-q")
    assert rc == 2
    assert error_line(err) == "cannot replace output folder 'out': Device or resource busy"
    assert (work / "out" / "keep.txt").read_text() == "mine"
    assert [p.name for p in work.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_get_the_users_umask(work, capsys, umask):
    old = os.umask(umask)
    try:
        assert main(["convert", "mlp.onnx", "--target", "float", "-o", "out", "-q"]) == 0
        assert main(["run", "out", "--data", "data.npz", "-o", "pred.npz", "-q"]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((work / "out").stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((work / "out" / "model.py").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((work / "pred.npz").stat().st_mode) == 0o666 & ~umask
    assert len(np.load(work / "pred.npz").files) == 1
