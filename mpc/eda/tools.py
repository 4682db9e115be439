"""Running the open EDA tools: finding them on PATH (one clear error naming the Debian package when one is
missing), asking their versions, and running them with a wall-clock limit that kills the whole process group
instead of hanging.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass

from mpc.errors import MPCError

# tool executable -> Debian package that provides it
DEBIAN_PACKAGES = {"yosys": "yosys", "nextpnr-ice40": "nextpnr-ice40", "icepack": "fpga-icestorm",
                   "verilator": "verilator", "iverilog": "iverilog", "vvp": "iverilog"}
_VERSION_ARGS = {"yosys": ("-V",), "nextpnr-ice40": ("--version",), "verilator": ("--version",),
                 "iverilog": ("-V",), "icepack": ("-h",), "vvp": ("-V",)}


class ToolMissing(MPCError):
    """An EDA tool that is not on PATH, named with the Debian package that installs it."""

    def __init__(self, tool: str):
        self.tool, self.package = tool, DEBIAN_PACKAGES.get(tool, tool)
        super().__init__(f"'{tool}' not found on PATH (install the Debian package: "
                         f"apt-get install {self.package})")


@dataclass(frozen=True)
class ToolRun:
    """What one tool invocation did: exit status, output, wall time, and whether the limit stopped it."""

    argv: tuple[str, ...]
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    timed_out: bool
    time_limit_s: float | None

    @property
    def ok(self) -> bool:
        """True when the tool finished within the limit with exit status 0."""
        return not self.timed_out and self.returncode == 0

    @property
    def note(self) -> str:
        """One line for reports: `ok`, `timed out after N s`, or the tool's last error line."""
        if self.timed_out:
            return f"timed out after {self.time_limit_s:g} s"
        if self.returncode == 0:
            return "ok"
        lines = [ln.strip() for ln in (self.stderr + "\n" + self.stdout).splitlines() if "ERROR" in ln]
        return lines[-1] if lines else f"exit status {self.returncode}"


def require(tool: str) -> str:
    """The absolute path of `tool`, or ToolMissing."""
    path = shutil.which(tool)
    if path is None:
        raise ToolMissing(tool)
    return path


def tool_version(tool: str) -> str:
    """The first line a tool prints about its version (raises ToolMissing when absent)."""
    run = run_tool((require(tool), *_VERSION_ARGS.get(tool, ("--version",))), time_limit_s=30)
    text = (run.stdout or run.stderr).strip()
    return text.splitlines()[0].strip() if text else "unknown"


def run_tool(argv, *, cwd: str | os.PathLike | None = None, time_limit_s: float | None = None) -> ToolRun:
    """Run argv; past `time_limit_s` kill its process group (the tool and any children) and say so."""
    argv = tuple(str(a) for a in argv)
    if os.sep not in argv[0]:
        require(argv[0])
    start = time.perf_counter()
    # a new session so that a timeout can kill the tool's own children (yosys runs abc) and nothing else
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=time_limit_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        timed_out = True
    return ToolRun(argv, None if timed_out else proc.returncode, out, err, time.perf_counter() - start,
                   timed_out, time_limit_s)
