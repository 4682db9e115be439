"""Named targets: each is a pass pipeline (a string, the only source of what runs)."""
from __future__ import annotations

from dataclasses import dataclass

from mpc.errors import BadFlag
from mpc.flagtypes import int_range, positive_float


@dataclass(frozen=True)
class Flag:
    """A target-specific command-line flag (e.g. --gamma for mp), added to convert/verify."""

    name: str
    type: object   # an argparse converter (mpc.flagtypes) or str
    help: str
    default: object = None
    choices: tuple | None = None


@dataclass(frozen=True)
class Target:
    """A conversion target: its name, pipeline string, summary and its own flags."""

    name: str
    pipeline: str
    summary: str
    flags: tuple[Flag, ...] = ()


TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("float", "canonicalize", "float model after canonicalization (BN folded, Gemm split, dead code removed)"),
    Target("mp", "canonicalize,mp-rewrite,mp-calibrate,dce",
           "multiplierless margin propagation (Nair et al. 2022): every matmul/gemm/conv becomes a calibrated MP op",
           flags=(Flag("gamma", positive_float, "fix gamma for every MP layer instead of calibrating it"),
                  Flag("gain-terms", int_range(1, 32), "signed power-of-two terms per MP gain", default=2),
                  Flag("gain", str, "MP gains as shift-add constants or plain floats", default="shift-add",
                       choices=("shift-add", "float")))),
]}


def get_target(name: str) -> Target:
    """The target called `name`; BadFlag naming the known ones otherwise."""
    if name not in TARGETS:
        raise BadFlag(f"unknown target '{name}' (expected one of: {', '.join(sorted(TARGETS))})")
    return TARGETS[name]


def all_flags() -> list[tuple[Flag, list[str]]]:
    """Every target-specific flag with the targets that take it (a flag may serve several)."""
    seen: dict[str, tuple[Flag, list[str]]] = {}
    for t in TARGETS.values():
        for f in t.flags:
            seen.setdefault(f.name, (f, []))[1].append(t.name)
    return [seen[k] for k in sorted(seen)]
