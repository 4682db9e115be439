"""Typed argparse converters: a flag's value is checked when the command line is parsed, before any
work, and a bad one is reported as `argument --flag: expected ..., got 'value'`.
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable

MAX_SEED = 2 ** 32 - 1


def _converter(parse: Callable[[str], object], ok: Callable[[object], bool], expected: str, name: str):
    def convert(text: str):
        try:
            value = parse(text)
        except (TypeError, ValueError):
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got '{text}'")
        return value
    convert.__name__ = name   # argparse names the type in some messages
    return convert


def int_range(lo: int, hi: int | None = None):
    """An int in [lo, hi] (no upper bound when hi is None)."""
    expected = f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}"
    return _converter(int, lambda v: v >= lo and (hi is None or v <= hi), expected, "int")


positive_int = int_range(1)
seed_int = int_range(0, MAX_SEED)
positive_float = _converter(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0", "float")
nonnegative_float = _converter(float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0", "float")
fraction = _converter(float, lambda v: 0 <= v <= 1, "a fraction in [0, 1] (0.9 for 90%)", "float")
unit_interval = _converter(float, lambda v: 0 <= v <= 1, "a number in [0, 1]", "float")
