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
