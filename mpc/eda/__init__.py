"""The open-source EDA flow: Yosys synthesis (`synth_xilinx`, `synth_ice40`), nextpnr-ice40 place and route
on an iCE40 UP5K, Verilator lint and Icarus Verilog compile helpers, each with tool versions, wall time and
a time limit that kills the tool and reports `timed out after N s`.  A missing tool is a `ToolMissing`
error naming the Debian package to install.  This package never imports the driver.

A backend that writes Verilog attaches real resource numbers to its own report with three calls:

    flow = mpc.eda.run_flow(sources, "mpc_top", workdir, time_limit_s=600)
    resources_json["yosys"] = mpc.eda.synth_report_json(flow.synth, flow.pnr)   # JSON-ready dict
    resources_md += mpc.eda.synth_report_md(flow.synth, flow.pnr)               # Markdown section

`synth_report_json` gives, per Yosys run, the Vivado-style keys LUT, FF, CARRY, DSP, BRAM_18K (BRAM: native
iCE40 4-kbit blocks), the raw cells by type, wall time and version, plus nextpnr's Fmax and utilisation;
`synth_report_md` renders the same as a Markdown table.
"""
from __future__ import annotations

from mpc.eda.flow import FlowResult, family_options, run_flow
from mpc.eda.nextpnr import PnRResult, place_and_route
from mpc.eda.report import synth_report_json, synth_report_md
from mpc.eda.sim import CheckResult, iverilog_compile, verilator_lint
from mpc.eda.tools import DEBIAN_PACKAGES, ToolMissing, ToolRun, require, run_tool, tool_version
from mpc.eda.yosys import SynthResult, parse_stat_json, summarize, synth

__all__ = ["DEBIAN_PACKAGES", "CheckResult", "FlowResult", "PnRResult", "SynthResult", "ToolMissing", "ToolRun",
           "family_options", "iverilog_compile", "parse_stat_json", "place_and_route", "require", "run_flow",
           "run_tool", "summarize", "synth", "synth_report_json", "synth_report_md", "tool_version",
           "verilator_lint"]
