"""The Verilog backend's flag: `--parallel P` (neurons computed at once per layer, like FINN's PE count).

It sets the lower-hw option of the verilog backend's lowering (`dce,lower-hw{parallel=P}`); lower-hw
checks it against every layer's neuron count and names the first layer it does not divide.
"""
from __future__ import annotations

import argparse

from mpc.driver.flagtypes import positive_int
from mpc.errors import BadFlag


def add_flags(p: argparse.ArgumentParser) -> None:
    """Add --parallel to a conversion subcommand."""
    p.add_argument("--parallel", type=positive_int, metavar="P", default=None,
                   help="verilog backend: neurons computed in parallel per layer (must divide every layer's "
                        "neuron count; default 1)")


def parallel(args) -> int:
    """--parallel, 1 when not given; BadFlag when given without --emit verilog."""
    p = getattr(args, "parallel", None)
    if p is None:
        return 1
    if "verilog" not in tuple(getattr(args, "emit", None) or ()):
        raise BadFlag("--parallel applies to the verilog backend only: add --emit verilog")
    return p


def add_synth_flags(p: argparse.ArgumentParser) -> None:
    """Add --synth and --synth-time-limit (Yosys, and nextpnr-ice40 for ice40, on the emitted RTL)."""
    p.add_argument("--synth", type=_families, metavar="FAMILY,...", default=(),
                   help="verilog backend: synthesize the RTL with Yosys (xilinx: synth_xilinx, ice40: synth_ice40 "
                        "and nextpnr-ice40 on an UP5K), the design and each layer; adds the counts to "
                        "resources.json/md and report.json (slow: minutes for large layers)")
    p.add_argument("--synth-time-limit", type=float, metavar="S", default=None,
                   help="seconds per Yosys or nextpnr run before it is stopped and reported as timed out")


def _families(text: str) -> tuple[str, ...]:
    """A comma-separated list of FPGA families, each one Yosys knows here."""
    from mpc.eda.yosys import FAMILIES
    fams = tuple(f for f in text.split(",") if f)
    bad = [f for f in fams if f not in FAMILIES]
    if bad or not fams:
        raise argparse.ArgumentTypeError(f"unknown FPGA family '{','.join(bad)}' (expected one or more of: "
                                         f"{', '.join(FAMILIES)})")
    return tuple(dict.fromkeys(fams))


def synth(args) -> dict:
    """Settings fields for --synth/--synth-time-limit; BadFlag when given without --emit verilog."""
    fams, limit = tuple(getattr(args, "synth", ()) or ()), getattr(args, "synth_time_limit", None)
    if (fams or limit is not None) and "verilog" not in tuple(getattr(args, "emit", None) or ()):
        raise BadFlag("--synth and --synth-time-limit apply to the verilog backend only: add --emit verilog")
    if limit is not None and not fams:
        raise BadFlag("--synth-time-limit needs --synth FAMILY")
    if limit is not None and limit <= 0:
        raise BadFlag(f"--synth-time-limit must be positive, got {limit:g}")
    return {"synth": fams, "synth_time_limit": limit}
