"""Place and route on a Lattice iCE40 UP5K with nextpnr-ice40: reads the JSON netlist `synth_ice40 -json`
wrote, and reports Fmax per clock and the device utilisation from nextpnr's JSON report, or, when the design
does not fit the device, a result saying so with nextpnr's reason.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mpc.eda.tools import require, run_tool, tool_version


@dataclass(frozen=True)
class PnRResult:
    """One nextpnr run: whether it fits, Fmax per clock (MHz), utilisation (used, available), time."""

    device: str
    package: str
    fits: bool
    fmax_mhz: dict[str, float]
    utilisation: dict[str, tuple[int, int]]
    wall_s: float
    version: str
    status: str                        # "ok", "does not fit: <reason>", "timed out after N s", error line
    report: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the design was placed and routed."""
        return self.status == "ok"


def _does_not_fit(text: str) -> str | None:
    """nextpnr's reason when the design needs more cells or pins than the device has, else None."""
    markers = ("Unable to find a placement location", "but the device only has", "no BELs remaining",
               "Design uses more", "failed to place")
    for line in text.splitlines():
        if any(m.lower() in line.lower() for m in markers):
            return line.replace("ERROR:", "").strip()
    return None


def place_and_route(netlist, workdir, *, device: str = "up5k", package: str = "sg48",
                    freq_mhz: float | None = None, time_limit_s: float | None = None,
                    seed: int = 1) -> PnRResult:
    """Place and route `netlist` (synth_ice40 -json) on an iCE40 `device` and report Fmax and utilisation."""
    require("nextpnr-ice40")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    report = work / "nextpnr_report.json"
    argv = ["nextpnr-ice40", f"--{device}", "--package", package, "--json", str(Path(netlist).resolve()),
            "--report", str(report), "--pcf-allow-unconstrained", "--seed", str(seed), "-q",
            "-l", "nextpnr.log", "--timing-allow-fail"]
    if freq_mhz is not None:
        argv += ["--freq", f"{freq_mhz:g}"]
    run = run_tool(argv, cwd=work, time_limit_s=time_limit_s)
    version = tool_version("nextpnr-ice40")
    if run.ok and report.exists():
        data = json.loads(report.read_text())
        fmax = {clk: round(float(v["achieved"]), 2) for clk, v in sorted(data.get("fmax", {}).items())}
        util = {k: (int(v["used"]), int(v["available"])) for k, v in sorted(data.get("utilization", {}).items())}
        return PnRResult(device, package, True, fmax, util, run.wall_s, version, "ok", report)
    reason = None if run.timed_out else _does_not_fit(run.stderr + run.stdout)
    status = f"does not fit: {reason}" if reason else run.note
    return PnRResult(device, package, False, {}, {}, run.wall_s, version, status)
