"""Resource reports from the open flow: a JSON-ready dict and a Markdown table, in the Vivado-style keys
(LUT, FF, CARRY, DSP, BRAM_18K) that hls4ml and FINN reports use, with tool versions and wall times.
"""
from __future__ import annotations

from mpc.eda.nextpnr import PnRResult
from mpc.eda.yosys import SynthResult

SUMMARY_KEYS = ("LUT", "FF", "CARRY", "DSP", "BRAM_18K", "BRAM")


def synth_report_json(synth: tuple[SynthResult, ...] | list[SynthResult], pnr: PnRResult | None = None) -> dict:
    """A JSON-ready dict: one entry per Yosys run (summary keys, raw cells, time, version), and nextpnr's."""
    runs = [{"family": r.family, "top": r.top, "options": list(r.options), "status": r.status,
             "summary": {k: r.summary.get(k) for k in SUMMARY_KEYS if k in r.summary},
             "cells": dict(sorted(r.cells.items())), "wall_s": round(r.wall_s, 3), "version": r.version}
            for r in synth]
    out: dict = {"yosys": runs}
    if pnr is not None:
        out["nextpnr"] = {"device": pnr.device, "package": pnr.package, "fits": pnr.fits, "status": pnr.status,
                          "fmax_mhz": dict(pnr.fmax_mhz),
                          "utilisation": {k: {"used": u, "available": a} for k, (u, a) in pnr.utilisation.items()},
                          "wall_s": round(pnr.wall_s, 3), "version": pnr.version}
    return out


def _cell(value) -> str:
    return "–" if value is None else str(value)


def synth_report_md(synth: tuple[SynthResult, ...] | list[SynthResult], pnr: PnRResult | None = None) -> str:
    """A Markdown section: a Yosys table (one row per run) and the iCE40 place-and-route line."""
    lines = ["## Yosys synthesis", "",
             "| family | options | LUT | FF | CARRY | DSP | BRAM_18K | BRAM | Yosys s | status |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in synth:
        vals = " | ".join(_cell(r.summary.get(k)) for k in SUMMARY_KEYS)
        lines.append(f"| {r.family} | {' '.join(r.options) or '–'} | {vals} | {r.wall_s:.1f} | {r.status} |")
    versions = sorted({r.version for r in synth if r.version})
    lines += ["", f"Tool: {', '.join(versions) or 'unknown'}."]
    if pnr is not None:
        lines += ["", _pnr_md(pnr)]
    return "\n".join(lines) + "\n"


def _pnr_md(pnr: PnRResult) -> str:
    """One paragraph: Fmax and the logic-cell, RAM and DSP use on the device, or why there is none."""
    head = f"nextpnr-ice40 ({pnr.version}) on iCE40 {pnr.device.upper()}-{pnr.package}:"
    if not pnr.ok:
        return f"{head} {pnr.status}."
    fmax = ", ".join(f"{clk} {mhz:.1f} MHz" for clk, mhz in pnr.fmax_mhz.items()) or "no clock (combinational)"
    used = ", ".join(f"{k} {u}/{a}" for k, (u, a) in pnr.utilisation.items()
                     if k in ("ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_DSP", "SB_IO"))
    return f"{head} Fmax {fmax}; utilisation {used}; {pnr.wall_s:.1f} s."
