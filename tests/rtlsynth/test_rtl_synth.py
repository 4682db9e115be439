"""`--emit verilog --synth FAMILY`: Yosys numbers for the whole design and for each layer module reach
resources.json, resources.md and report.json (checked against a Yosys run written here, independently of
mpc.eda); without --synth nothing synthesizes; bad flag combinations are one `mpc: error:` line."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import error_line, run_cli

pytestmark = pytest.mark.skipif(shutil.which("yosys") is None or shutil.which("iverilog") is None,
                                reason="needs yosys and iverilog (installed by .ci/run)")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """A 3 -> 2 dense layer (ONNX) and 8 seeded calibration samples."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    d = tmp_path_factory.mktemp("tiny")
    w = numpy_helper.from_array(np.array([[0.5, -0.25], [0.75, 0.125], [-0.5, 0.375]], np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["input", "w"], ["y"], name="dense")], "tiny",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(d / "tiny.onnx"))
    np.savez(d / "tiny.npz", input=np.random.default_rng(0).uniform(-1, 1, (8, 3)).astype(np.float32))
    return d / "tiny.onnx", d / "tiny.npz"


def _stat_cells(rtl_file: Path, top: str, work: Path) -> dict[str, int]:
    """Cells by type from Yosys's text `stat` after a plain `synth_ice40 -dsp` (our own script)."""
    script = f"read_verilog -sv {rtl_file}\nsynth_ice40 -dsp -top {top}\ntee -o {work / 'stat.txt'} stat\n"
    subprocess.run(["yosys", "-q", "-p", script.replace("\n", "; ")], check=True, capture_output=True, cwd=work)
    text = (work / "stat.txt").read_text()
    return {m[1]: int(m[2]) for m in re.finditer(r"^\s+(\$?\w+)\s+(\d+)\s*$", text, re.MULTILINE)}


def test_synth_adds_yosys_per_layer_and_design(tmp_path, capsys, tiny):
    model, calib = tiny
    rc, _, err = run_cli(capsys, "convert", model, "--target", "float", "--quantize", "8", "--calib", calib,
                         "--emit", "verilog", "--synth", "ice40", "--synth-time-limit", "300", "-o", tmp_path / "o",
                         "-q")
    assert rc == 0, err
    res = json.loads((tmp_path / "o" / "resources.json").read_text())
    layer = res["layers"]["l00_mac_dense"]["yosys"]["ice40"]
    assert layer["status"] == "ok"
    cells = _stat_cells(tmp_path / "o" / "rtl" / "l00_mac_dense.v", "l00_mac_dense", tmp_path)
    assert layer["LUT"] == cells["SB_LUT4"] and layer["DSP"] == cells["SB_MAC16"] == 1   # the one multiplier
    assert layer["FF"] == sum(n for c, n in cells.items() if c.startswith("SB_DFF"))
    design = res["yosys"]["yosys"]
    assert [r["family"] for r in design] == ["ice40"] and design[0]["top"] == "mpc_top"
    assert design[0]["summary"]["LUT"] > 0 and "nextpnr" in res["yosys"]
    md = (tmp_path / "o" / "resources.md").read_text()
    assert f"| l00_mac_dense | ice40 | {layer['LUT']} | {layer['FF']} |" in md and "## Whole design" in md
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["sections"]["verilog"]["yosys"] == res["yosys"]


def test_without_synth_nothing_synthesizes(tmp_path, capsys, tiny, monkeypatch):
    import mpc.eda.flow

    def boom(*a, **k):
        raise AssertionError("yosys ran without --synth")
    monkeypatch.setattr(mpc.eda.flow, "synth", boom)
    model, calib = tiny
    rc, _, err = run_cli(capsys, "convert", model, "--target", "float", "--quantize", "8", "--calib", calib,
                         "--emit", "verilog", "-o", tmp_path / "o", "-q")
    assert rc == 0, err
    assert "yosys" not in json.loads((tmp_path / "o" / "resources.json").read_text())


def test_verify_synth_reports_the_design(capsys, tiny):
    model, calib = tiny
    rc, out, err = run_cli(capsys, "verify", model, "--target", "float", "--quantize", "8", "--calib", calib,
                           "--data", calib, "--emit", "verilog", "--synth", "ice40", "--json", "-q")
    assert rc == 0, err
    r = json.loads(out)
    assert r["verilog_mismatches"] == 0
    run = r["verilog_synth"]["design"]["yosys"][0]
    assert run["status"] == "ok" and run["summary"]["DSP"] == 1
    assert r["verilog_synth"]["layers"]["l00_mac_dense"][0]["summary"]["DSP"] == 1


@pytest.mark.parametrize("flags, message", [
    (("--synth", "ice40"), "--synth and --synth-time-limit apply to the verilog backend only"),
    (("--emit", "verilog", "--quantize", "8", "--synth", "altera"), "unknown FPGA family 'altera'"),
    (("--emit", "verilog", "--quantize", "8", "--synth-time-limit", "5"), "--synth-time-limit needs --synth"),
])
def test_bad_synth_flags_are_one_line(tmp_path, capsys, tiny, flags, message):
    rc, _, err = run_cli(capsys, "convert", tiny[0], "--target", "float", *flags, "-o", tmp_path / "o")
    assert rc == 2 and message in error_line(err)
    assert not (tmp_path / "o").exists()
