"""Choosing fixed-point formats: from a value range, for an exact accumulator, and for shift-add gains.

Leaf functions, no graph: the `quantize` pass calls them. Also reads the per-tensor TOML config.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import tomllib

from mpc.errors import BadFlag
from mpc.ir.types import DType

MAX_ACC = 62


def fx(width: int, frac: int) -> DType:
    """The signed type fx<width,frac>."""
    return DType.make("fx", (width, frac))


def frac_for(max_abs: float, width: int) -> int:
    """Fraction bits so that fx<width,F> covers [-max_abs, max_abs] with the finest step."""
    if not (max_abs > 0 and math.isfinite(max_abs)):
        return width - 1
    e = math.floor(math.log2(max_abs)) + 1          # 2^(e-1) <= max_abs < 2^e
    f = width - 1 - e
    if math.ldexp((1 << (width - 1)) - 1, -f) < max_abs:   # max_abs just under 2^e: one bit more
        f -= 1
    return f


def headroom_bits(dtype: DType, max_abs: float) -> float:
    """log2(largest representable / max_abs): how far the range is from saturating (inf for 0)."""
    hi = dtype.real_range[1]
    return math.inf if max_abs <= 0 else math.log2(hi / max_abs)


def saturating_fraction(dtype: DType, values: np.ndarray) -> float:
    """The fraction of `values` (reals) outside dtype's representable range."""
    lo, hi = dtype.real_range
    v = np.asarray(values, dtype=np.float64)
    return float(((v < lo) | (v > hi)).mean()) if v.size else 0.0


def bits_for(bound: int) -> int:
    """Signed width holding every integer in [-bound, bound]."""
    return max(2, int(bound).bit_length() + 1)


def shift_add_terms(v: float, limit: int) -> list[tuple[int, int]]:
    """(sign, exponent) terms of the non-adjacent form of v (a dyadic rational), fewest first; at
    most `limit` kept (the largest), so the sum is v when v needs <= limit signed powers of two."""
    if v == 0 or not math.isfinite(v):
        return []
    q = Fraction(v)
    s = max(0, (q.denominator.bit_length() - 1))
    n = int(q * (1 << s))
    terms, e = [], 0
    while n:
        if n & 1:
            d = 2 - (n & 3)          # +1 or -1: the NAF digit
            terms.append((d, e - s))
            n -= d
        n >>= 1
        e += 1
    return sorted(terms, key=lambda t: -t[1])[:limit]


@dataclass(frozen=True)
class TensorFormat:
    """A per-tensor override from the config file: width and/or fraction bits."""

    width: int | None = None
    frac: int | None = None


@dataclass(frozen=True)
class Config:
    """The --quantize-config file: defaults (width, rounding, overflow) and per-tensor formats."""

    width: int | None = None
    rounding: str | None = None
    overflow: str | None = None
    tensors: dict[str, TensorFormat] = field(default_factory=dict)


def _int(path: str, where: str, v, lo: int, hi: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise BadFlag(f"{path}: {where} must be an integer from {lo} to {hi}, got {v!r}")
    return v


def load_config(path: str) -> Config:
    """Read a quantize config (TOML): `width`, `rounding`, `overflow`, and `[tensors]` name = {width, frac}."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BadFlag(f"--quantize-config: no such file '{path}'") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BadFlag(f"{path}: not valid TOML ({e})") from None
    unknown = sorted(set(data) - {"width", "rounding", "overflow", "tensors"})
    if unknown:
        raise BadFlag(f"{path}: unknown key '{unknown[0]}' (expected width, rounding, overflow, tensors)")
    for key, choices in (("rounding", ("nearest", "floor")), ("overflow", ("saturate", "wrap"))):
        if key in data and data[key] not in choices:
            raise BadFlag(f"{path}: {key} must be one of {', '.join(choices)}, got {data[key]!r}")
    width = _int(path, "width", data["width"], 2, 32) if "width" in data else None
    tensors = {}
    for name, spec in sorted(data.get("tensors", {}).items()):
        if not isinstance(spec, dict) or set(spec) - {"width", "frac"}:
            raise BadFlag(f"{path}: tensors.{name} must be a table with width and/or frac")
        tensors[name] = TensorFormat(_int(path, f"tensors.{name}.width", spec["width"], 2, 32) if "width" in spec
                                     else None,
                                     _int(path, f"tensors.{name}.frac", spec["frac"], -64, 96) if "frac" in spec
                                     else None)
    return Config(width, data.get("rounding"), data.get("overflow"), tensors)
