"""Fixed-point arithmetic: the bit-accurate integer kernels behind the `fx` op family.

These functions are the emulator: the interpreter runs `fx` ops through them, and the C backend
is checked against them bit for bit. Stored integers are NumPy int64 while computing (every fx op
bounds its widths so that int64 holds the exact intermediate values) and the container of the
result type when stored. See `mpc.fx.arith` for rounding, overflow and the integer MP threshold.
"""
from mpc.fx.arith import (
    Overflow,
    Rounding,
    avgpool2d,
    conv2d,
    dequantize,
    from_float,
    maxpool2d,
    mp_alpha,
    mp_dot,
    overflow,
    round_shift,
    shift_to,
)

__all__ = ["Overflow", "Rounding", "avgpool2d", "conv2d", "dequantize", "from_float", "maxpool2d", "mp_alpha",
           "mp_dot", "overflow", "round_shift", "shift_to"]
