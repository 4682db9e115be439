"""End to end: the digits MLP pruned to 80% and quantized to 8 bits emits C with compressed weight
tables that verify bit-exact against the emulator and take less Cortex-M flash than the dense model."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli

from mpc.ir import parse

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "models" / "digits_mlp.onnx"
TRAIN = ROOT / "examples" / "data" / "digits_train.npz"
PRUNE = ("--prune", "magnitude", "--sparsity", "0.8")

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs the host gcc")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """The first 64 training samples, as a --calib / --data file."""
    d = np.load(TRAIN)
    path = tmp_path_factory.mktemp("data") / "small.npz"
    np.savez(path, input=d["input"][:64], labels=d["labels"][:64])
    return path


def test_pruned_model_c_holds_only_non_zero_weights(tmp_path, capsys, small):
    out = tmp_path / "out"
    rc, _, err = run_cli(capsys, "convert", MLP, "--target", "float", *PRUNE, "--quantize", "8", "--emit", "c",
                         "--calib", small, "-o", out, "-q")
    assert rc == 0, err
    g = parse((out / "model.mpc").read_text(), dict(np.load(out / "weights.npz")))
    mats = [op.operands[1].name for op in g.ops if op.kind == "fx.matmul"]
    c = (out / "c" / "model.c").read_text()
    assert mats
    for w in mats:
        arr, ident = g.weights[w], re.sub(r"[^A-Za-z0-9_]", "_", w)
        assert not re.search(rf"static const \w+ w_{ident}\[", c)   # no dense table
        m = re.search(rf"static const \w+ w_{ident}_val\[\d+\] = {{(.*?)}};", c, re.DOTALL)
        assert m, w
        vals = [int(v) for v in m.group(1).replace("\n", " ").split(",")]
        assert len(vals) == int((arr != 0).sum()) < arr.size * 0.3 and 0 not in vals
        assert sorted(vals) == sorted(int(v) for v in arr.reshape(-1) if v != 0)


def test_pruned_verify_bit_exact_and_smaller_flash(capsys, small):
    flash = {}
    for name, extra in (("dense", ()), ("pruned", PRUNE)):
        rc, out, err = run_cli(capsys, "verify", MLP, "--data", small, "--calib", small, "--target", "float", *extra,
                               "--quantize", "8", "--emit", "c", "-q", "--json")
        assert rc == 0, err
        r = json.loads(out)
        assert r["c_mismatches"] == 0 and r["c_samples"] == 64
        flash[name] = r.get("c_cortex_m_flash_bytes")
    if flash["dense"] is not None:   # measured where arm-none-eabi-gcc is installed
        assert flash["pruned"] < flash["dense"]
