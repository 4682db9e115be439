"""Building and running the emitted C: host gcc, arm-none-eabi-gcc for Cortex-M and qemu-system-arm.

Used by `mpc verify --emit c`, the report's resource section, tests and benchmarks. Every tool is
optional at import; a missing one raises `ToolMissing` naming it (callers decide whether that is an
error or a note).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from mpc.errors import MPCError

HOST_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-O2")
SANITIZE = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g")
ARM_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-Os", "-std=c99", "-Wall", "-Wextra", "-Werror")


class ToolMissing(MPCError):
    """A compiler or emulator the C checks need is not installed."""


class BuildError(MPCError):
    """The emitted C did not compile or did not run: a bug in the backend, reported with the tool's words."""


def tool(name: str) -> str:
    """The path of a program on PATH; ToolMissing otherwise."""
    path = shutil.which(name)
    if path is None:
        raise ToolMissing(f"'{name}' not found on PATH (needed to build the emitted C)")
    return path


def run_tool(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    """Run a build tool; BuildError quoting its first stderr lines when it fails."""
    p = subprocess.run(cmd, capture_output=True, check=False, **kw)
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip().splitlines()
        raise BuildError(f"{what} failed (exit {p.returncode}): {' | '.join(err[:6])}")
    return p


def compile_host(cdir: Path, exe: Path, extra: tuple[str, ...] = (), cc: str = "gcc") -> Path:
    """Compile main.c + model.c in `cdir` with the host compiler into `exe`."""
    run_tool([tool(cc), *HOST_FLAGS, *extra, "-o", str(exe), str(cdir / "main.c"), str(cdir / "model.c")],
         f"{cc} {' '.join(HOST_FLAGS + extra)}")
    return exe


def run_host(exe: Path, raw_in: bytes, timeout: float = 600) -> bytes:
    """Run a compiled driver on raw input bytes; its raw output."""
    return run_tool([str(exe)], str(exe.name), input=raw_in, timeout=timeout).stdout


def section_sizes(obj: Path, size_tool: str = "size") -> dict[str, int]:
    """text, data, bss bytes of an object or executable (Berkeley format of binutils size)."""
    out = run_tool([tool(size_tool), str(obj)], size_tool).stdout.decode().splitlines()
    text, data, bss = (int(v) for v in out[1].split()[:3])
    return {"text": text, "data": data, "bss": bss}


def model_object_sizes(cdir: Path, work: Path, arm: bool = False) -> dict[str, int]:
    """Sizes of model.c alone compiled for the host (-O2) or Cortex-M4 (-Os): code+rodata, RAM."""
    cc, flags, size = ("arm-none-eabi-gcc", ARM_FLAGS, "arm-none-eabi-size") if arm else ("gcc", HOST_FLAGS, "size")
    obj = work / ("model_arm.o" if arm else "model_host.o")
    run_tool([tool(cc), *flags, "-c", "-o", str(obj), str(cdir / "model.c")], f"{cc} -c model.c")
    s = section_sizes(obj, size)
    return {"flash_bytes": s["text"] + s["data"], "ram_bytes": s["data"] + s["bss"], **s}
