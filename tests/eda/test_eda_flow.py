"""The open EDA flow on tiny designs written here: cell counts agree with an independent parse of Yosys's own
text `stat` output, a shift-and-add design uses no multiplier, a multiplier maps to the iCE40 DSP under -dsp,
nextpnr reports an Fmax (and says when a design does not fit), the time limit kills a tool, and a missing
tool names its Debian package."""
from __future__ import annotations

import re
import shutil
import time

import pytest

from mpc.eda import ToolMissing, place_and_route, run_tool, synth, synth_report_json, synth_report_md
from mpc.errors import MPCError

pytestmark = pytest.mark.skipif(shutil.which("yosys") is None or shutil.which("nextpnr-ice40") is None,
                                reason="needs yosys and nextpnr-ice40 (installed by .ci/run)")

# y = 3a + 5b - 2c, written as shifts and adds: no multiplier anywhere
SHIFT_ADD = """
module shiftadd(input clk, input signed [7:0] a, input signed [7:0] b, input signed [7:0] c,
                output reg signed [11:0] y);
  always @(posedge clk) y <= (a <<< 1) + a + (b <<< 2) + b - (c <<< 1);
endmodule
"""
MULT = """
module mult(input clk, input [7:0] a, input [7:0] b, output reg [15:0] y);
  always @(posedge clk) y <= a * b;
endmodule
"""
COUNTER = """
module counter(input clk, input rst, output [7:0] q);
  reg [7:0] r;
  always @(posedge clk) if (rst) r <= 8'd0; else r <= r + 8'd1;
  assign q = r;
endmodule
"""
WIDE = """
module wide(input [127:0] a, output [7:0] y);
  assign y = a[7:0] ^ a[127:120];
endmodule
"""
BIG_MULT = """
module bigmult(input [63:0] a, input [63:0] b, output [127:0] y);
  assign y = a * b;
endmodule
"""


def _write(tmp, name: str, text: str):
    path = tmp / f"{name}.v"
    path.write_text(text)
    return path


def _text_stat_cells(text: str) -> dict[str, int]:
    """Cells by type from the last module section of Yosys's human-readable `stat` output."""
    section = text.split("===")[-1]
    cells_part = section.split("Number of cells:")[1]
    found = {}
    for line in cells_part.splitlines()[1:]:
        m = re.fullmatch(r"\s+(\$?[A-Za-z_][\w$]*)\s+(\d+)\s*", line)
        if m is None:
            break
        found[m.group(1)] = int(m.group(2))
    return found


@pytest.fixture(scope="module")
def shift_add(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shiftadd")
    return synth([_write(tmp, "shiftadd", SHIFT_ADD)], "shiftadd", tmp / "xilinx", family="xilinx",
                 time_limit_s=300)


@pytest.fixture(scope="module")
def mult_ice40(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mult")
    return synth([_write(tmp, "mult", MULT)], "mult", tmp / "ice40", family="ice40", options=("-dsp",),
                 time_limit_s=300)


def test_shift_add_uses_no_multiplier_and_matches_text_stat(shift_add):
    assert shift_add.ok, shift_add.status
    text = _text_stat_cells(shift_add.stat_text.read_text())
    assert not [c for c in text if "mul" in c.lower() or "DSP" in c or "MAC" in c]
    assert shift_add.summary["DSP"] == 0
    assert shift_add.summary["LUT"] == sum(n for c, n in text.items() if re.fullmatch(r"LUT[1-6]|INV", c))
    assert shift_add.summary["FF"] == sum(n for c, n in text.items() if c.startswith("FD")) == 12
    assert shift_add.summary["CARRY"] == text.get("CARRY4", 0) > 0
    assert shift_add.cells == text


def test_multiplier_maps_to_ice40_dsp_under_dsp_flag(mult_ice40):
    assert mult_ice40.ok, mult_ice40.status
    text = _text_stat_cells(mult_ice40.stat_text.read_text())
    assert text.get("SB_MAC16", 0) == mult_ice40.summary["DSP"] == 1
    assert mult_ice40.summary["LUT"] == text.get("SB_LUT4", 0)
    assert mult_ice40.summary["FF"] == sum(n for c, n in text.items() if c.startswith("SB_DFF"))
    assert mult_ice40.summary["BRAM_18K"] is None and mult_ice40.summary["BRAM"] == 0


def test_nextpnr_reports_fmax_and_utilisation(tmp_path):
    net = synth([_write(tmp_path, "counter", COUNTER)], "counter", tmp_path / "ice40", family="ice40",
                time_limit_s=300, netlist=True)
    assert net.ok and net.netlist_json is not None
    routed = place_and_route(net.netlist_json, tmp_path / "pnr", time_limit_s=300)
    assert routed.ok and routed.fits, routed.status
    log = (tmp_path / "pnr" / "nextpnr.log").read_text()
    logged = [float(m) for m in re.findall(r"Max frequency for clock .*?: ([\d.]+) MHz", log)]
    (clock, fmax), = routed.fmax_mhz.items()
    assert fmax > 10 and logged and abs(logged[-1] - fmax) < 0.01
    used, available = routed.utilisation["ICESTORM_LC"]
    assert 8 <= used < available == 5280
    md = synth_report_md([net], routed)
    assert f"{fmax:.1f} MHz" in md and "ICESTORM_LC" in md
    assert synth_report_json([net], routed)["nextpnr"]["fmax_mhz"] == {clock: fmax}


def test_design_that_does_not_fit_says_so(tmp_path):
    net = synth([_write(tmp_path, "wide", WIDE)], "wide", tmp_path / "ice40", family="ice40", netlist=True,
                time_limit_s=300)
    routed = place_and_route(net.netlist_json, tmp_path / "pnr", time_limit_s=300)
    assert not routed.fits and routed.status.startswith("does not fit:")
    assert "does not fit" in synth_report_md([net], routed)


def test_time_limit_kills_the_tool(tmp_path):
    start = time.perf_counter()
    result = synth([_write(tmp_path, "bigmult", BIG_MULT)], "bigmult", tmp_path / "x", family="xilinx",
                   options=("-nodsp",), time_limit_s=1)
    assert time.perf_counter() - start < 30
    assert not result.ok and result.status == "timed out after 1 s" and result.cells == {}
    assert "timed out after 1 s" in synth_report_md([result])


def test_run_tool_returns_exit_status_and_time():
    run = run_tool(("yosys", "-p", "this_is_not_a_command"), time_limit_s=60)
    assert run.returncode != 0 and not run.ok and not run.timed_out and run.wall_s > 0


def test_missing_tool_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissing) as err:
        synth([_write(tmp_path, "counter", COUNTER)], "counter", tmp_path / "x")
    assert isinstance(err.value, MPCError)
    assert str(err.value) == "'yosys' not found on PATH (install the Debian package: apt-get install yosys)"
    with pytest.raises(ToolMissing, match="apt-get install nextpnr-ice40"):
        place_and_route(tmp_path / "none.json", tmp_path / "p")
