"""Yosys (and nextpnr-ice40) numbers for an emitted design: `--synth xilinx|ice40|xilinx,ice40`.

The whole design (`mpc_top`, all rtl/*.v) is synthesized once per FPGA family and, for iCE40, placed and
routed on an UP5K; every layer module is synthesized again as its own top (its file alone: layer modules
instantiate nothing), so resources.md lists LUT/FF/CARRY/DSP per layer next to the analytical counts and
the cycles. Yosys works in a temporary folder: only the reports reach the output folder. Wall times and
tool versions are part of the result, so a run with --synth is not byte-reproducible (one without it is).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from mpc.eda import run_flow, synth_report_json, synth_report_md

KEYS = ("LUT", "FF", "CARRY", "DSP", "BRAM_18K", "BRAM")


def synthesize(rtl: Path, layers: list[str], families: tuple[str, ...], time_limit_s: float | None = None,
               quiet: bool = False, progress: bool = False) -> dict:
    """{"design": the flow on mpc_top, "layers": {module: Yosys runs}} for the Verilog files in `rtl`."""
    sources = sorted(Path(rtl).glob("*.v"))
    with tempfile.TemporaryDirectory(prefix="mpc-synth-") as tmp:
        work = Path(tmp)
        top = run_flow(sources, "mpc_top", work / "mpc_top", families=families, pnr="ice40" in families,
                       time_limit_s=time_limit_s, quiet=quiet, progress=progress)
        per_layer = {name: run_flow([Path(rtl) / f"{name}.v"], name, work / name, families=families, pnr=False,
                                    time_limit_s=time_limit_s, quiet=quiet, progress=progress)
                     for name in layers}
    return {"design": synth_report_json(top.synth, top.pnr), "md": synth_report_md(top.synth, top.pnr),
            "layers": {name: synth_report_json(f.synth)["yosys"] for name, f in per_layer.items()}}


def with_synthesis(res: dict, synth: dict) -> dict:
    """resources.json plus the Yosys figures: `yosys` (the design) and each layer's `yosys` by family."""
    layers = {name: {**r, "yosys": {run["family"]: {**run["summary"], "status": run["status"],
                                                    "wall_s": run["wall_s"]} for run in synth["layers"][name]}}
              for name, r in res["layers"].items()}
    return {**res, "layers": layers, "yosys": synth["design"]}


def synthesis_md(res: dict, synth_md: str) -> str:
    """Markdown: per-layer Yosys counts beside the cycles, then the whole design's table and nextpnr."""
    rows = ["", "## Yosys per layer (each layer module synthesized as its own top)", "",
            "| module | family | LUT | FF | CARRY | DSP | BRAM_18K | BRAM | cycles | Yosys s | status |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, r in res["layers"].items():
        for family, y in r["yosys"].items():
            vals = " | ".join("–" if y.get(k) is None else str(y[k]) for k in KEYS)
            rows.append(f"| {name} | {family} | {vals} | {r['latency_cycles']} | {y['wall_s']:.1f} | {y['status']} |")
    return "\n".join(rows) + "\n\n## Whole design (mpc_top)\n\n" + synth_md.split("\n", 2)[2]


def add_synthesis(folder: Path, emitted, families: tuple[str, ...], time_limit_s: float | None = None,
                  quiet: bool = False, progress: bool = False):
    """Synthesize folder/rtl, rewrite resources.json/md with the Yosys figures; the Emitted with them."""
    import json
    from dataclasses import replace

    from mpc.backends.verilog.resources import resources_md
    res = emitted.report_sections["verilog"]
    synth = synthesize(Path(folder) / "rtl", list(res["layers"]), families, time_limit_s, quiet, progress)
    res = with_synthesis(res, synth)
    (Path(folder) / "resources.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    (Path(folder) / "resources.md").write_text(resources_md(res) + synthesis_md(res, synth["md"]))
    return replace(emitted, report_sections={**emitted.report_sections, "verilog": res})
