"""The Verilog backend through the CLI: `mpc convert --emit verilog [--parallel P]` writes OUT/rtl/*.v with
top mpc_top and the resource report; `mpc verify --emit verilog` simulates it against the emulator;
impossible --parallel values are one `mpc: error:` line; converting twice gives byte-identical rtl/."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import error_line, run_cli

from mpc.ir import parse

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "models" / "digits_mlp.onnx"
TRAIN = ROOT / "examples" / "data" / "digits_train.npz"

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs iverilog (installed by .ci/run)")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """The first 6 training samples, as a --calib / --data file."""
    d = np.load(TRAIN)
    path = tmp_path_factory.mktemp("data") / "small.npz"
    np.savez(path, input=d["input"][:6], labels=d["labels"][:6])
    return path


def _convert(capsys, out: Path, small: Path, *extra) -> tuple[int, str]:
    rc, _, err = run_cli(capsys, "convert", MLP, "--target", "float", "--quantize", "8", "--emit", "verilog",
                         "--calib", small, "-o", out, "-q", *extra)
    return rc, err


def test_convert_writes_rtl_and_resources(tmp_path, capsys, small):
    rc, err = _convert(capsys, tmp_path / "a", small, "--parallel", "2", "--dump-ir-after", "lower-hw")
    assert rc == 0, err
    dump = (tmp_path / "a" / "ir" / "verilog" / "02-lower-hw.mpc").read_text()   # the hw IR, dumpable
    assert dump.count("hw.mac_dense(") == 3 and dump.count("parallel = 2") == 3 and "fx.matmul" not in dump
    rtl = sorted(p.name for p in (tmp_path / "a" / "rtl").iterdir())
    assert "mpc_top.v" in rtl and sum(n.endswith("mac_dense.v") for n in rtl) == 3
    assert "module mpc_top (" in (tmp_path / "a" / "rtl" / "mpc_top.v").read_text()
    res = json.loads((tmp_path / "a" / "resources.json").read_text())
    macs = [r for r in res["layers"].values() if r["kind"] == "hw.mac_dense"]
    assert [r["multipliers"] for r in macs] == [2, 2, 2]
    assert [r["latency_cycles"] for r in macs] == _mac_cycles(tmp_path / "a", 2)
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["sections"]["verilog"]["latency_cycles"] == res["latency_cycles"]
    assert report["backends"]["verilog"]["lowering"] == "dce,lower-hw{parallel=2}"
    rc, err = _convert(capsys, tmp_path / "b", small, "--parallel", "2", "--dump-ir-after", "lower-hw")
    assert rc == 0, err
    for name in rtl + ["../resources.json", "../resources.md"]:
        assert (tmp_path / "a" / "rtl" / name).read_bytes() == (tmp_path / "b" / "rtl" / name).read_bytes(), name


def _mac_cycles(out: Path, p: int) -> list[int]:
    """Per matmul of the converted model: one cycle per (group of p neurons, input) whose p weights are not
    all zero (at least one per group), plus the cycle that raises out_valid."""
    g = parse((out / "model.mpc").read_text(), dict(np.load(out / "weights.npz")))
    cycles = []
    for op in (op for op in g.ops if op.kind == "fx.matmul"):
        w = g.weights[op.operands[1].name]
        groups = w.reshape(w.shape[0], -1, p).transpose(1, 0, 2)   # [H/p, D, p]
        cycles.append(sum(max(1, int(np.any(grp != 0, axis=1).sum())) for grp in groups) + 1)
    return cycles


def test_verify_simulates_bit_exact(tmp_path, capsys, small):
    rc, out, err = run_cli(capsys, "verify", MLP, "--target", "float", "--quantize", "8", "--emit", "verilog",
                           "--parallel", "2", "--calib", small, "--data", small, "-q", "--json")
    assert rc == 0, err
    r = json.loads(out)
    assert r["verilog_mismatches"] == 0 and r["verilog_samples"] == 6 and r["verilog_elements"] == 60
    # the simulated latency is the sum of the layers' schedules; the initiation interval the slowest
    # layer's plus its two handshake cycles (the cycle it takes an input, the cycle its output is taken)
    rc, err = _convert(capsys, tmp_path / "o", small, "--parallel", "2")
    assert rc == 0, err
    cycles = _mac_cycles(tmp_path / "o", 2)
    assert r["latency_cycles"] == sum(cycles) and r["initiation_interval_cycles"] == max(cycles) + 1
    assert any(c["name"] == "verilog_mismatches" and c["passed"] for c in r["checks"])


@pytest.mark.parametrize("argv, message", [
    (("--parallel", "4"), "--parallel 4: hw.mac_dense"),
    (("--parallel", "0"), "argument --parallel: expected an integer >= 1, got '0'"),
])
def test_impossible_parallel(tmp_path, capsys, small, argv, message):
    rc, err = _convert(capsys, tmp_path / "o", small, *argv)
    assert rc == 2
    assert message in error_line(err) or message.replace("hw.mac_dense", "fx.matmul") in error_line(err)
    assert not (tmp_path / "o").exists()


def test_parallel_needs_the_verilog_backend(tmp_path, capsys, small):
    rc, _, err = run_cli(capsys, "convert", MLP, "--target", "float", "--quantize", "8", "--emit", "c",
                         "--parallel", "2", "--calib", small, "-o", tmp_path / "o", "-q")
    assert rc == 2 and "--parallel applies to the verilog backend only" in error_line(err)
