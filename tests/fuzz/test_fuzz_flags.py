"""Fuzz every subcommand's flags and values.

Each example draws a subcommand, a subset of its flags (in any order, `--debug` anywhere) and a
value for each: valid ones, 0, negative, NaN, inf, garbage text, missing files, data files with
NaN, a plain .npy, wrong shapes, a read-only target, the current folder, a folder holding the
command's own input. Whatever is drawn, the run must end in exit 0, 2 (one line `mpc: error: ...`)
or 3 (`mpc verify` checks: one line `mpc: check failed: ...`), never 1 or an escaping exception;
it must leave nothing behind but the output it was asked for, and never touch its inputs.
Every run happens inside a scratch folder that is the current directory, so `-o .` cannot reach
the repository.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc.cli import main

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])
READ_ONLY = "/sys/mpc-fuzz-out"   # not writable, even by root

NUMBERS = ["0", "-1", "-5", "1", "2", "3", "0.5", "1e-3", "nan", "inf", "-inf", "1e400", "abc", "", "1,2"]
DATA = ["data.npz", "nan.npz", "inf.npz", "plain.npy", "garbage.npz", "shape.npz", "nolabels.npz",
        "missing.npz", "model.onnx", "."]
OUT_DIRS = ["out", "exists", ".", "src", "nodir/deeper/out", READ_ONLY, "data.npz", "src/model.onnx", ""]
OUT_FILES = ["pred.npz", "exists.npz", "nodir/pred.npz", READ_ONLY + ".npz", "data.npz", "outf/model.py",
             ".", ""]
MODELS = ["src/model.onnx", "outf", "outf/model.mpc", "missing.onnx", "data.npz", "src/model.onnx"]


def _flags() -> dict[str, dict[str, list[str] | None]]:
    """Subcommand -> flag -> values (None: a switch)."""
    conversion = {"--target": ["float", "mp", "nope", ""], "--emit": ["numpy", "nope", ""],
                  "--calib": DATA, "--passes": ["canonicalize", "+dce", "-dce", "nope", "", ","],
                  "--dump-ir-after": ["all", "dce", "nope"], "--input-shape": ["1,64", "0", "-1,2", "a"],
                  "--seed": NUMBERS, "--gamma": NUMBERS, "--gain-terms": NUMBERS,
                  "--gain": ["float", "shift-add", "nope"], "--static-batch": None, "-q": None,
                  "--progress": None}
    return {
        "inspect": {"--passes": conversion["--passes"], "--input-shape": conversion["--input-shape"]},
        "convert": conversion | {"-o": OUT_DIRS, "--force": None, "--timings": None},
        "verify": conversion | {"--data": DATA, "--samples": NUMBERS, "--json": None, "--source": MODELS,
                                "--max-abs-err": NUMBERS, "--min-agreement": NUMBERS,
                                "--max-accuracy-drop": NUMBERS},
        "run": {"--data": DATA, "-o": OUT_FILES, "--force": None, "-q": None},
        "finetune": conversion | {"--data": DATA, "--epochs": ["1", "0", "-1", "nan", "x"],
                                  "--distill": NUMBERS, "--weight-decay": NUMBERS, "--lr": NUMBERS,
                                  "--batch-size": NUMBERS, "-o": OUT_DIRS, "--force": None},
        "sweep-gamma": conversion | {"--data": DATA, "--min": NUMBERS, "--max": NUMBERS,
                                     "-o": OUT_DIRS,
                                     "--force": None},
        "passes": {}, "ops": {},
    }


FLAGS = _flags()
POSITIONAL = {"inspect": MODELS, "convert": MODELS, "verify": MODELS, "run": ["outf", "src", "missing", "."],
              "finetune": MODELS, "sweep-gamma": MODELS}
# a valid core for each subcommand (flag None: the positional argument); the fuzz replaces or drops
# parts of it, then adds drawn flags
BASE = {"inspect": [(None, "src/model.onnx")],
        "convert": [(None, "src/model.onnx"), ("--target", "mp"), ("--calib", "data.npz"), ("-o", "out")],
        "verify": [(None, "src/model.onnx"), ("--target", "float"), ("--data", "data.npz")],
        "run": [(None, "outf"), ("--data", "data.npz")],
        "finetune": [(None, "src/model.onnx"), ("--target", "mp"), ("--data", "data.npz"), ("-o", "out"),
                     ("--epochs", "1")],
        "sweep-gamma": [(None, "src/model.onnx"), ("--data", "data.npz"), ("--min", "1"), ("--max", "2")],
        "passes": [], "ops": []}


def _arg(flag: str | None, value: str | None) -> list[str]:
    if flag is None:
        return [value]
    if value is None:
        return [flag]
    return [f"{flag}={value}"] if flag.startswith("--") else [flag, value]


@st.composite
def invocations(draw) -> list[str]:
    """A subcommand with a mostly valid core, drawn flags and values, `--debug` anywhere or nowhere."""
    command = draw(st.sampled_from(sorted(FLAGS)))
    table = FLAGS[command] | ({None: POSITIONAL[command]} if command in POSITIONAL else {})
    args = {}
    for flag, value in BASE[command]:
        how = draw(st.integers(0, 9))
        if how == 0:
            continue   # dropped
        args[flag] = draw(st.sampled_from(table[flag])) if how == 1 else value
    extra = draw(st.lists(st.sampled_from(sorted(FLAGS[command])), max_size=4, unique=True)) if FLAGS[command] else []
    for flag in extra:
        values = table[flag]
        args[flag] = None if values is None else draw(st.sampled_from(values))
    argv = [command]
    for flag in draw(st.permutations(sorted(args, key=str))):
        argv += _arg(flag, args[flag])
    if draw(st.integers(0, 9)) == 0:
        argv.insert(draw(st.integers(0, len(argv))), "--debug")
    return argv


@contextlib.contextmanager
def _cwd(folder: Path):
    """chdir into `folder` for the block (contextlib.chdir needs Python 3.11)."""
    old = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


def _scratch(template: Path) -> Path:
    work = Path(tempfile.mkdtemp(prefix="mpc-flags-"))
    shutil.copytree(template, work, dirs_exist_ok=True)
    return work


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Model, data files (good and bad) and a converted float folder, copied into every example."""
    t = tmp_path_factory.mktemp("flags-template")
    (t / "src").mkdir()
    shutil.copy(ROOT / "examples" / "models" / "digits_mlp.onnx", t / "src" / "model.onnx")
    with np.load(ROOT / "examples" / "data" / "digits_train.npz") as f:
        x, y = f["input"][:24], f["labels"][:24]
    np.savez(t / "data.npz", input=x, labels=y)
    np.savez(t / "nolabels.npz", input=x)
    bad = x.copy()
    bad[3, 5] = np.nan
    np.savez(t / "nan.npz", input=bad, labels=y)
    bad[3, 5] = np.inf
    np.savez(t / "inf.npz", input=bad, labels=y)
    np.save(t / "plain.npy", x)
    (t / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip")
    np.savez(t / "shape.npz", input=x[:, :10], labels=y)
    (t / "exists").mkdir()
    (t / "exists" / "keep.txt").write_text("user file\n")
    (t / "exists.npz").write_bytes(b"user file")
    with _cwd(t):
        rc = main(["convert", "src/model.onnx", "--target", "float", "-o", "outf", "-q"])
    assert rc == 0
    return t


def _snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> content hash of every file (folders as '<dir>')."""
    snap = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if "__pycache__" in rel:
            continue
        snap[rel] = "<dir>" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return snap


def _run(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, err.getvalue()


def _outputs(argv: list[str]) -> set[str]:
    """Top-level names a successful run may create: its -o target, or convert's default out/."""
    command = next(a for a in argv if a != "--debug")
    made = {"out"} if command in ("convert", "finetune", "sweep-gamma") else set()
    for t in _values(argv, "-o"):
        made.add(Path(t).parts[0] if t else "")
    return made


def _values(argv: list[str], flag: str) -> list[str]:
    """The values given to `flag` (as `--flag=v` or `-o v`)."""
    got = [a.split("=", 1)[1] for a in argv if a.startswith(flag + "=")]
    return got + [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def _inputs(argv: list[str]) -> list[str]:
    """Paths the command reads (a .mpc's folder holds its weights too)."""
    found = [a for a in argv if not a.startswith("-") and a not in _values(argv, "-o")][1:2]
    found += _values(argv, "--data") + _values(argv, "--calib") + _values(argv, "--source")
    found += [str(Path(p).parent) for p in found if p.endswith(".mpc")]
    return [str(Path(p)) for p in found if p]


def _within(path: str, folder: str) -> bool:
    return folder == "." or path == folder or path.startswith(folder.rstrip("/") + "/")


def _replaceable(argv: list[str], rc: int, path: str) -> bool:
    """A file that this run may replace: under its -o target, with --force, after success."""
    if rc != 0 or "--force" not in argv or any(_within(path, p) for p in _inputs(argv)):
        return False
    targets = [str(Path(t)) for t in _values(argv, "-o") if t]
    return any(_within(path, t) for t in targets)


def _check(argv: list[str], rc: int, err: str, before: dict, after: dict) -> None:
    assert rc in (0, 2, 3), f"exit {rc} for {argv}: {err[-2000:]!r}"
    if "--debug" not in argv:
        assert "Traceback" not in err, err
        lines = [ln for ln in err.splitlines() if ln.startswith(("mpc: error:", "mpc: check failed:"))]
        if rc == 2:
            assert len(lines) == 1 and lines[0].startswith("mpc: error: ") and err.endswith(lines[0] + "\n"), err
        elif rc == 3:
            assert lines and all(ln.startswith("mpc: check failed: ") for ln in lines), err
    for path, digest in before.items():   # inputs and user files: never deleted or changed
        if _replaceable(argv, rc, path):
            continue
        assert after.get(path) == digest, f"{argv} changed or removed {path}: {err[-500:]!r}"
    new = {Path(p).parts[0] for p in after if p not in before}
    stray = sorted(n for n in new if not (rc == 0 and n in _outputs(argv)))
    assert not stray, f"{argv} (exit {rc}) left {stray}"
    assert not [p for p in after if ".tmp-" in p or ".old-" in p], f"{argv} left staging folders"


@SETTINGS
@given(argv=invocations())
def test_every_flag_value_ends_in_0_2_or_3_and_leaves_no_strays(template, argv):
    work = _scratch(template)
    try:
        before = _snapshot(work)
        with _cwd(work):
            rc, err = _run(argv)
        _check(argv, rc, err, before, _snapshot(work))
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(READ_ONLY)
        shutil.rmtree(work, ignore_errors=True)
