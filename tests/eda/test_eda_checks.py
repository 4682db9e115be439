"""Verilator lint and Icarus Verilog compile helpers, and the Vivado-style summary of raw cell counts."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from mpc.eda import iverilog_compile, summarize, synth, verilator_lint
from mpc.errors import BadInput

CLEAN = """module clean(input wire clk, input wire [3:0] a, output reg [3:0] q);
  always @(posedge clk) q <= a + 4'd1;
endmodule
"""
# an 8-bit sum truncated into 4 bits: Verilator's WIDTH warning
TRUNCATES = """module truncates(input wire [7:0] a, output wire [3:0] q);
  assign q = a + 8'd1;
endmodule
"""
TESTBENCH = """module tb;
  reg clk = 0; reg [3:0] a = 4'd6; wire [3:0] q;
  clean dut(.clk(clk), .a(a), .q(q));
  initial begin #1 clk = 1; #1 $display("q=%0d", q); $finish; end
endmodule
"""


@pytest.mark.skipif(shutil.which("verilator") is None, reason="needs verilator (installed by .ci/run)")
def test_verilator_lint_clean_and_warning(tmp_path):
    (tmp_path / "clean.v").write_text(CLEAN)
    (tmp_path / "truncates.v").write_text(TRUNCATES)
    assert verilator_lint([tmp_path / "clean.v"], "clean").clean
    dirty = verilator_lint([tmp_path / "truncates.v"], "truncates")
    assert not dirty.clean and any("WIDTH" in m for m in dirty.messages)


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs iverilog (installed by .ci/run)")
def test_iverilog_compile_runs_under_vvp(tmp_path):
    (tmp_path / "clean.v").write_text(CLEAN)
    (tmp_path / "tb.v").write_text(TESTBENCH)
    result = iverilog_compile([tmp_path / "clean.v", tmp_path / "tb.v"], "tb", tmp_path / "sim.vvp")
    assert result.clean, result.messages
    out = subprocess.run(["vvp", "-n", str(tmp_path / "sim.vvp")], capture_output=True, text=True, check=True)
    assert "q=7" in out.stdout                                      # 6 + 1 after one clock edge


def test_summary_keys_from_cells():
    xilinx = {"LUT2": 3, "LUT6": 2, "INV": 1, "SRLC32E": 1, "FDRE": 4, "FDCE": 1, "CARRY4": 2, "DSP48E1": 1,
              "RAMB36E1": 1, "RAMB18E1": 1, "MUXF7": 5, "IBUF": 9}
    assert summarize(xilinx, "xilinx") == {"LUT": 7, "FF": 5, "CARRY": 2, "DSP": 1, "BRAM_18K": 3}
    ice40 = {"SB_LUT4": 10, "SB_DFF": 2, "SB_DFFNESR": 1, "SB_CARRY": 4, "SB_MAC16": 2, "SB_RAM40_4K": 1}
    assert summarize(ice40, "ice40") == {"LUT": 10, "FF": 3, "CARRY": 4, "DSP": 2, "BRAM": 1, "BRAM_18K": None}


def test_unknown_family_is_a_clear_error(tmp_path):
    with pytest.raises(BadInput, match="unknown FPGA family 'ecp5' \\(expected one of: xilinx, ice40\\)"):
        synth([tmp_path / "x.v"], "x", tmp_path, family="ecp5")
