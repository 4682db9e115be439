"""What `mpc verify --emit verilog` adds: the emitted RTL simulated with Icarus Verilog against the
emulator (the interpreter's fx kernels), integer by integer, with the latency of one inference and the
initiation interval measured in the simulation, and a check that fails the command on any mismatch.
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mpc.data import Dataset
from mpc.ir import Graph


def rtl_measure(graph: Graph, data: Dataset, parallel: int = 1) -> dict[str, Any]:
    """Lower `graph` for the verilog backend, simulate every sample of `data`, count differing integers."""
    from mpc.backends.base import lower
    from mpc.backends.verilog import chain, configured, render_rtl
    from mpc.backends.verilog.sim import simulate
    from mpc.driver.verify_fx import emulator_io
    lowered, _ = lower(configured(parallel), graph)
    qin_v, _, qout_v = chain(lowered)
    qin, qout = emulator_io(lowered, data)
    with tempfile.TemporaryDirectory(prefix="mpc-verify-rtl-") as tmp:
        got, latency, ii = simulate(render_rtl(lowered), qin, qin_v.type.dtype.width, qout.shape[1:],
                                    qout_v.type.dtype.width, Path(tmp))
    want = qout.astype(np.int64)
    bad = int(want.size) if got.shape != want.shape else int((got != want).sum())
    return {"verilog_mismatches": bad, "verilog_samples": int(qin.shape[0]), "verilog_elements": int(want.size),
            "latency_cycles": latency, "initiation_interval_cycles": ii, "verilog_parallel": parallel,
            "verilog_outputs_per_sample": math.prod(qout.shape[1:])}


def rtl_checks(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The check `verilog_mismatches == 0` when the RTL was simulated."""
    if "verilog_mismatches" not in r:
        return []
    v = r["verilog_mismatches"]
    return [{"name": "verilog_mismatches", "value": v, "threshold": 0, "passed": v == 0,
             "message": f"{v} of {r['verilog_elements']} output integers of the simulated RTL differ from the emulator"}]


def print_rtl(r: dict[str, Any]) -> None:
    """The Verilog line of the verify table (nothing when the RTL was not simulated)."""
    if "verilog_mismatches" not in r:
        return
    print(f"  Verilog vs emulator {r['verilog_mismatches']} of {r['verilog_elements']} output integers differ "
          f"({r['verilog_samples']} samples, iverilog); latency {r['latency_cycles']} cycles, "
          f"initiation interval {r['initiation_interval_cycles']} cycles (--parallel {r['verilog_parallel']})")
    for run in r.get("verilog_synth", {}).get("design", {}).get("yosys", []):
        s = run["summary"]
        print(f"  Yosys synth_{run['family']} (mpc_top): {run['status']}; LUT {s.get('LUT')}, FF {s.get('FF')}, "
              f"CARRY {s.get('CARRY')}, DSP {s.get('DSP')} ({run['wall_s']:.1f} s)")


def rtl_synth(graph: Graph, settings) -> dict[str, Any]:
    """`mpc verify --emit verilog --synth F`: the same lowered RTL synthesized (design and each layer)."""
    from mpc.backends.base import lower
    from mpc.backends.verilog import chain, configured, module_name, render_rtl
    from mpc.backends.verilog.synthesis import synthesize
    lowered, _ = lower(configured(settings.parallel), graph)
    names = [module_name(i, op) for i, op in enumerate(chain(lowered)[1])]
    with tempfile.TemporaryDirectory(prefix="mpc-verify-synth-") as tmp:
        for fname, text in render_rtl(lowered).items():
            (Path(tmp) / fname).write_text(text)
        res = synthesize(Path(tmp), names, settings.synth, settings.synth_time_limit, settings.quiet,
                         settings.progress)
    return {"design": res["design"], "layers": res["layers"]}
