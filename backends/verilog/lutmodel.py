"""Analytical iCE40 logic estimate per layer module (LUT4, SB_CARRY, BRAM, DSP), from the datapath the
renderers write, for comparison with Yosys `synth_ice40 -dsp` (what `--synth ice40` runs).

Cost model (iCE40 UP5K primitives: 4-input LUT, one carry cell per bit, SB_MAC16, 4-kbit SB_RAM40_4K):
- adder, subtractor, negation or magnitude comparator of w bits: w LUT4 + w SB_CARRY (one bit per cell);
- a test r > 0 of w bits: the sign bit and an OR of the rest, ceil(w / 3) LUT4 and no carry;
- 2:1 multiplexer of w bits: w LUT4; a d:1 multiplexer: d - 1 of them;
- constant ROM: a LUT4 holds 16 entries of one bit, so w * ceil(G / 16) LUT4 for G entries of w bits;
  Yosys moves ROMs deeper than 32 entries into SB_RAM40_4K blocks (ceil(bits / 4096)) instead; a ROM of
  one entry is a constant (no logic);
- multiplier up to 16 x 16 bits and the accumulate after it: one SB_MAC16 (no LUTs);
- controller (state, counters, handshake): CONTROL_LUT4 per module.
MP layer, per PE with a b-bit datapath over d inputs: the adders and comparators resources.py counts (4d of
its comparators are the r > 0 tests), plus
multiplexers: |u| and the running max pick one of two values (2 x 2d x b bits), the two [.]+ sums add
conditionally (4d x b), and each of the T gain terms is a barrel shift of the gain width in SHIFT_BITS
stages plus its sign select (a convolution's patch multiplexer is not counted). MAC layer: the input select (a d:1 multiplexer of the input width), the
accumulator's first-entry clear (P x accumulator bits), the ROM of the schedule. Element-wise ops: their
adders and comparators (a relu: a comparison with zero on a carry chain and a select). Yosys shares and simplifies what this model counts in full, so the model is an
upper-side estimate; the tests hold it within 25 % of Yosys on small MP and MAC layers.
"""
from __future__ import annotations

import math

import numpy as np
from mpc.backends.verilog.layers import SHIFT_BITS, gain_width, mac_schedule

CONTROL_LUT4 = 20      # FSM, counters and handshake of one sequential module
LUTROM_MAX_ENTRIES = 32


def _rom(entries: int, width: int) -> dict:
    """LUT4 or BRAM cost of a constant ROM with `entries` words of `width` bits."""
    if entries <= 1:
        return {"LUT": 0, "BRAM": 0}
    if entries > LUTROM_MAX_ENTRIES:
        return {"LUT": 0, "BRAM": math.ceil(entries * width / 4096)}
    return {"LUT": width * math.ceil(entries / 16), "BRAM": 0}


def _arith_bits(r: dict, cmp_width: int) -> int:
    """Bits of adders (from resources' adders-by-width) and comparators (each cmp_width bits)."""
    return sum(int(w) * n for w, n in r["adders"].items()) + r["comparators"] * cmp_width


def _mp(op, graph, r: dict) -> dict:
    a = op.attrs
    d, b, p = math.prod(op.operands[1].type.shape[1:]), a.width, a.parallel
    terms = op.operands[2].type.shape[1]
    mux = p * (8 * d * b + terms * gain_width(op, graph) * (SHIFT_BITS + 1))
    groups = op.operands[1].type.shape[0] // p
    rom = _rom(groups, r["rom_bits"] // groups)
    zero_tests = p * 4 * d                 # the [.]+ tests r > 0: sign bit and an OR of the others, no carry
    arith = _arith_bits(r, b) - zero_tests * b
    lut = arith + mux + zero_tests * math.ceil(b / 3) + rom["LUT"] + CONTROL_LUT4
    return {"LUT": lut, "CARRY": arith, "BRAM": rom["BRAM"], "DSP": 0}


def _mac(op, graph, r: dict) -> dict:
    a = op.attrs
    w = np.asarray(graph.weights[op.operands[1].name])
    d, wx = w.shape[0], op.operands[0].type.dtype.width
    entries = len(mac_schedule(w, a.parallel))
    rom = _rom(entries, r["rom_bits"] // entries)
    lut = (d - 1) * wx + a.parallel * a.width + rom["LUT"] + CONTROL_LUT4
    small = r["multiplier_bits"] <= 32 and a.width <= 32          # fits SB_MAC16 (16 x 16, 32-bit accumulate)
    carry = 0 if small else _arith_bits(r, a.width)
    return {"LUT": lut, "CARRY": carry, "BRAM": rom["BRAM"], "DSP": a.parallel if small else 0}


def _elementwise(op, graph, r: dict) -> dict:
    width = op.results[0].type.dtype.width
    if op.kind == "fx.relu":            # Yosys maps x > 0 to a carry chain, then selects x or 0 per bit
        bits = r["comparators"] * width
        return {"LUT": 2 * bits, "CARRY": bits, "BRAM": 0, "DSP": 0}
    arith = _arith_bits(r, width)
    return {"LUT": arith, "CARRY": arith, "BRAM": 0, "DSP": 0}


def estimate_ice40(op, graph, r: dict) -> dict:
    """{LUT, CARRY, BRAM, DSP} of one module on iCE40, from its resources.py counts `r`."""
    model = {"hw.mp_dense": _mp, "hw.mp_conv2d": _mp, "hw.mac_dense": _mac}.get(op.kind, _elementwise)
    return model(op, graph, r)
