"""The C accumulator width is decided by the `c-accumulators` lowering pass (attribute acc_bits) and
only printed by the renderer: 32 bits where 8 x 8-bit products over 5 terms need 19, 64 where 16 x 16
over 5 need 35. (That the emitted C stays byte-identical and bit-exact is checked by tests/fx.)"""
from __future__ import annotations

import re

import numpy as np
from mpc.backends import BACKENDS
from mpc.backends.base import lower
from mpc.backends.c import render_c

from mpc.ir import parse

GRAPH = """graph @mm(%x: f32[N,5]) -> (%y: f32[N,4]) {{
  weight @w : fx<{b},4>[5,4]
  %0 = fx.quantize(%x) {{to = "fx<{b},4>"}} : fx<{b},4>[N,5]
  %1 = fx.matmul(%0, @w) {{to = "fx<40,8>"}} : fx<40,8>[N,4]
  %y = fx.dequantize(%1) : f32[N,4]
}}
"""


def test_lowering_sets_the_width_and_the_renderer_prints_it():
    for bits, acc in ((8, "int32_t"), (16, "int64_t")):
        g = parse(GRAPH.format(b=bits), {"w": np.ones((5, 4), np.int8 if bits == 8 else np.int16)})
        lowered, records = lower(BACKENDS["c"], g)
        assert [r.name for r in records] == ["dce", "c-accumulators", "c-sparse"]
        op = next(op for op in lowered.ops if op.kind == "fx.matmul")
        assert op.attrs.acc_bits == (32 if 2 * bits + (5 - 1).bit_length() <= 31 else 64)
        assert re.findall(r"\b(int32_t|int64_t) acc\b", render_c(lowered)[0]) == [acc]
