"""Small helpers for checking Verilog before synthesis: Verilator lint and an Icarus Verilog compile."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mpc.eda.tools import require, run_tool


@dataclass(frozen=True)
class CheckResult:
    """A lint or compile run: clean or not, the diagnostics, wall time."""

    tool: str
    clean: bool
    messages: tuple[str, ...]
    wall_s: float
    status: str


def verilator_lint(sources, top: str, *, time_limit_s: float | None = 120) -> CheckResult:
    """`verilator --lint-only -Wall`: clean means exit 0 and no %Warning/%Error lines."""
    require("verilator")
    run = run_tool(("verilator", "--lint-only", "-Wall", "--top-module", top,
                    *[str(Path(s).resolve()) for s in sources]), time_limit_s=time_limit_s)
    msgs = tuple(ln for ln in (run.stderr + run.stdout).splitlines() if ln.startswith(("%Warning", "%Error")))
    return CheckResult("verilator", run.ok and not msgs, msgs, run.wall_s, run.note)


def iverilog_compile(sources, top: str, out, *, time_limit_s: float | None = 120) -> CheckResult:
    """`iverilog -g2005 -s top -o out`: compiles the design (e.g. with a testbench) for `vvp`."""
    require("iverilog")
    run = run_tool(("iverilog", "-g2005", "-Wall", "-s", top, "-o", str(out),
                    *[str(Path(s).resolve()) for s in sources]), time_limit_s=time_limit_s)
    msgs = tuple(ln for ln in (run.stderr + run.stdout).splitlines() if ln.strip())
    return CheckResult("iverilog", run.ok, msgs, run.wall_s, run.note)
