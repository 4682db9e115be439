"""The open synthesis flow for one design: Yosys for each FPGA family, then nextpnr-ice40 on the iCE40
netlist, each step under the same time limit, with a progress bar on a terminal.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mpc.eda.nextpnr import PnRResult, place_and_route
from mpc.eda.yosys import SynthResult, synth
from mpc.progress import progress_bar


@dataclass(frozen=True)
class FlowResult:
    """Every step's result for one design."""

    top: str
    synth: tuple[SynthResult, ...]
    pnr: PnRResult | None


def family_options(family: str, dsp: bool) -> tuple[str, ...]:
    """Yosys flags for DSP use: synth_xilinx maps multipliers to DSP48 unless -nodsp; synth_ice40 only with -dsp."""
    if family == "xilinx":
        return () if dsp else ("-nodsp",)
    return ("-dsp",) if dsp else ()


def run_flow(sources, top: str, workdir, *, families=("xilinx", "ice40"), dsp: bool = True, pnr: bool = True,
             time_limit_s: float | None = None, quiet: bool = False, progress: bool = False) -> FlowResult:
    """Synthesize `sources` for each family (in workdir/<family>) and place and route the iCE40 netlist."""
    work = Path(workdir)
    steps = [f"yosys synth_{f}" for f in families] + (["nextpnr-ice40"] if pnr and "ice40" in families else [])
    bar = progress_bar(total=len(steps), desc=f"eda {top}", quiet=quiet, progress=progress)
    results, routed = [], None
    for family in families:
        bar.set_postfix_str(f"synth_{family}")
        results.append(synth(sources, top, work / family, family=family, options=family_options(family, dsp),
                             time_limit_s=time_limit_s, netlist=family == "ice40"))
        bar.update(1)
    ice40 = next((r for r in results if r.family == "ice40"), None)
    if pnr and ice40 is not None:
        bar.set_postfix_str("nextpnr-ice40")
        routed = _route(ice40, work / "nextpnr", time_limit_s)
        bar.update(1)
    bar.close()
    return FlowResult(top, tuple(results), routed)


def _route(ice40: SynthResult, work: Path, time_limit_s: float | None) -> PnRResult:
    """Place and route when synthesis produced a netlist; otherwise a result naming why not."""
    if ice40.netlist_json is None:
        return PnRResult("up5k", "sg48", False, {}, {}, 0.0, "", f"not run: synth_ice40 {ice40.status}")
    return place_and_route(ice40.netlist_json, work, time_limit_s=time_limit_s)
