"""Yosys synthesis for Xilinx 7-series (`synth_xilinx`) and Lattice iCE40 (`synth_ice40`): writes a script,
runs it under a time limit, and parses `stat -json` into cell counts by type and the Vivado-style summary
keys LUT, FF, CARRY, DSP, BRAM_18K that hls4ml and FINN reports use.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mpc.eda.tools import ToolRun, require, run_tool, tool_version
from mpc.errors import BadInput

FAMILIES = ("xilinx", "ice40")

# Which primitive cells count under each summary key, per family.  Xilinx LUTs include shift-register LUTs
# (SRL16E/SRLC32E) as Vivado's "Slice LUTs" do, and INV (Yosys keeps inverters as INV cells; each is a LUT1
# in Vivado's count); a RAMB36 counts as two 18K blocks.
_XILINX = {
    "LUT": {"LUT1": 1, "LUT2": 1, "LUT3": 1, "LUT4": 1, "LUT5": 1, "LUT6": 1, "SRL16E": 1, "SRLC32E": 1,
            "INV": 1},
    "FF": {"FDRE": 1, "FDSE": 1, "FDCE": 1, "FDPE": 1, "FDRE_1": 1, "FDSE_1": 1, "FDCE_1": 1, "FDPE_1": 1,
           "LDCE": 1, "LDPE": 1},
    "CARRY": {"CARRY4": 1, "CARRY8": 1},
    "DSP": {"DSP48E1": 1, "DSP48E2": 1},
    "BRAM_18K": {"RAMB18E1": 1, "RAMB36E1": 2, "RAMB18E2": 1, "RAMB36E2": 2},
}
_ICE40 = {
    "LUT": {"SB_LUT4": 1},
    "FF": {},                                     # every SB_DFF* variant: see _PREFIXES
    "CARRY": {"SB_CARRY": 1},
    "DSP": {"SB_MAC16": 1},
    "BRAM": {"SB_RAM40_4K": 1, "SB_RAM40_4KNR": 1, "SB_RAM40_4KNW": 1, "SB_RAM40_4KNRNW": 1},
}
KEYS = {"xilinx": _XILINX, "ice40": _ICE40}
# iCE40 has twenty flip-flop primitives (edge, enable, set/reset sync or async), all named SB_DFF*
_PREFIXES = {"xilinx": {}, "ice40": {"FF": "SB_DFF"}}


@dataclass(frozen=True)
class SynthResult:
    """One Yosys run: the summary keys, raw cells by type, wall time, version, and what happened."""

    family: str
    top: str
    options: tuple[str, ...]
    cells: dict[str, int]
    wall_s: float
    version: str
    status: str                                   # "ok", "timed out after N s", or the tool's error line
    stat_text: Path | None = None                 # Yosys's own `stat` text, kept for readers and tests
    netlist_json: Path | None = None              # synth_ice40 -json output, input to nextpnr
    summary: dict[str, int | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when synthesis finished and the counts are valid."""
        return self.status == "ok"


def summarize(cells: dict[str, int], family: str) -> dict[str, int | None]:
    """Vivado-style keys from cells by type; BRAM_18K is None on iCE40 (its block RAMs are 4 kbit: BRAM)."""
    out: dict[str, int | None] = {key: sum(cells.get(c, 0) * n for c, n in kinds.items())
                                  for key, kinds in KEYS[family].items()}
    for key, prefix in _PREFIXES[family].items():
        out[key] += sum(n for c, n in cells.items() if c.startswith(prefix))
    if family == "ice40":
        out["BRAM_18K"] = None
    return out


def parse_stat_json(text: str) -> dict[str, int]:
    """Cells by type of the whole design from `stat -json` (the flattened top, or the design total)."""
    data = json.loads(text)
    design = data.get("design") or next(iter(data["modules"].values()))
    return {str(k): int(v) for k, v in sorted(design.get("num_cells_by_type", {}).items())}


def synth_script(sources, top: str, family: str, options: tuple[str, ...], netlist: Path | None) -> str:
    """The Yosys script: read every source, synthesize for the family, save stat as text and JSON."""
    if family not in FAMILIES:
        raise BadInput(f"unknown FPGA family '{family}' (expected one of: {', '.join(FAMILIES)})")
    reads = "\n".join(f"read_verilog -sv {json.dumps(str(Path(s).resolve()))}" for s in sources)
    json_opt = f" -json {json.dumps(str(netlist))}" if netlist is not None else ""
    synth = f"synth_{family} -top {top}{json_opt} {' '.join(options)}".rstrip()
    return f"{reads}\n{synth}\ntee -o stat.txt stat\ntee -q -o stat.json stat -json\n"


def synth(sources, top: str, workdir, *, family: str = "xilinx", options=(), time_limit_s: float | None = None,
          netlist: bool = False) -> SynthResult:
    """Synthesize Verilog `sources` with top module `top` in `workdir` (options e.g. ("-nodsp",) or ("-dsp",))."""
    work, options = Path(workdir), tuple(options)
    net = work / f"{top}.{family}.json" if netlist else None
    script = synth_script(sources, top, family, options, net)        # a bad family fails before any tool
    require("yosys")
    work.mkdir(parents=True, exist_ok=True)
    (work / "synth.ys").write_text(script)
    run = run_tool(("yosys", "-q", "-l", "yosys.log", "synth.ys"), cwd=work, time_limit_s=time_limit_s)
    return _result(run, work, family, top, options, net)


def _result(run: ToolRun, work: Path, family: str, top: str, options: tuple[str, ...],
            net: Path | None) -> SynthResult:
    """Read the stat files a finished run left behind; a failed or killed run has no counts."""
    version = tool_version("yosys")
    stat_json = work / "stat.json"
    if not run.ok or not stat_json.exists():
        status = run.note if not run.ok else "yosys wrote no statistics"
        return SynthResult(family, top, options, {}, run.wall_s, version, status)
    cells = parse_stat_json(stat_json.read_text())
    return SynthResult(family, top, options, cells, run.wall_s, version, "ok", work / "stat.txt",
                       net if net is not None and net.exists() else None, summarize(cells, family))
