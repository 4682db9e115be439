"""The `hw` op family: fixed-point layers as scheduled hardware datapaths (the Verilog backend's IR).

Each op is one synthesizable unit with its schedule written on it, so the Verilog printer only spells
out what the op says. The values are the same stored integers as the fx op it came from, and the
kernel is that fx op's kernel: the bit-accurate emulator is unchanged by the lowering.

    hw.mp_dense(x, w, gain_shift, gain_sign)   multiplierless margin propagation over `parallel`
        processing elements (PEs). Each PE holds |x + w| and |x - w| for all D inputs, two adder trees
        of [a - mid]+ + [-a - mid]+ and a comparator against gamma; a controller runs, per group of
        `parallel` neurons, one cycle that loads the bracket [max a - gamma, max a], `halvings` bisection
        cycles, and one cycle for the gain (signed shifts of alpha - beta, as wide as the largest shift needs, at most 64 bits)
        and overflow. `width` is the
        datapath's bit width (every partial sum fits in it).
    hw.mac_dense(x, w)   multiply-accumulate: `parallel` multipliers, one input per cycle; weights
        that are zero for every PE of a group are skipped (no ROM word, no cycle). `width` is the
        accumulator's bit width.

    hw.mp_conv2d(x, w, gain_shift, gain_sign)   the hw.mp_dense datapath run on the patch of each output
        position in turn (a case table selects the patch; padding reads zero); results leave in NCHW order.

All require `parallel` to divide the number of output neurons H (groups are full: no idle PEs).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpc.fx import arith as A
from mpc.fx.arith import Overflow
from mpc.ir.opdefs import InferError, define, lookup
from mpc.ir.ops_fx import AccumAttrs, FxMPAttrs, FxMPConvAttrs, _matmul_infer, _mp_dot_infer
from mpc.ir.ops_fx import _mp_conv_infer as _mp_conv_infer_fx
from mpc.ir.types import DType

MAX_WIDTH = 63   # the datapath never needs more: the fx verifier bounds every intermediate


@dataclass(frozen=True)
class HwMPAttrs(FxMPAttrs):
    """fx.mp_dot's attributes plus the schedule (neurons per cycle, bisection halvings, datapath width)."""
    parallel: int = 1
    halvings: int = 1
    width: int = 32


@dataclass(frozen=True)
class HwMPConvAttrs(FxMPConvAttrs):
    """fx.mp_conv2d's attributes plus the same schedule as HwMPAttrs."""
    parallel: int = 1
    halvings: int = 1
    width: int = 32


@dataclass(frozen=True)
class HwMACAttrs:
    to: DType
    overflow: Overflow = Overflow.SATURATE
    parallel: int = 1
    width: int = 32


def _schedule(a, neurons: int) -> None:
    if a.parallel < 1 or neurons % a.parallel:
        raise InferError(f"parallel = {a.parallel} must divide the {neurons} output neurons")
    if not 2 <= a.width <= MAX_WIDTH:
        raise InferError(f"width = {a.width} must be in [2, {MAX_WIDTH}]")


def _mp_infer(types, a):
    out = _mp_dot_infer(types, a)
    _schedule(a, types[1].shape[0])
    if a.halvings != int(a.gamma).bit_length():
        raise InferError(f"halvings = {a.halvings} must be the bit length of gamma ({int(a.gamma).bit_length()})")
    return out


def _mp_conv_infer(types, a):
    out = _mp_conv_infer_fx(types, a)
    if a.group != 1:
        raise InferError(f"group = {a.group}: the hardware MP convolution is not grouped")
    _schedule(a, types[1].shape[0])
    if a.halvings != int(a.gamma).bit_length():
        raise InferError(f"halvings = {a.halvings} must be the bit length of gamma ({int(a.gamma).bit_length()})")
    return out


def _mac_infer(types, a):
    out = _matmul_infer(types, AccumAttrs(a.to, a.overflow))
    _schedule(a, types[1].shape[1])
    return out


def _mp_kernel(k, x, w, shift, sign):
    return lookup("fx.mp_dot").kernel(k, x, w, shift, sign)


def _mac_kernel(k, x, w):
    to = k.out_types[0].dtype
    return A.overflow(np.matmul(x.astype(np.int64), w.astype(np.int64)), to.width, k.attrs.overflow, to.numpy)


define("hw.mp_dense", ("x", "w", "gain_shift", "gain_sign"),
       "MP layer as a multiplierless datapath: parallel PEs, adder trees, bisection controller, shift-add gain",
       _mp_infer, _mp_kernel, HwMPAttrs, traits=("pure",))
define("hw.mp_conv2d", ("x", "w", "gain_shift", "gain_sign"),
       "MP convolution on the hw.mp_dense datapath: the PEs visit the output positions one after another",
       _mp_conv_infer, lambda k, x, w, s, g: lookup("fx.mp_conv2d").kernel(k, x, w, s, g), HwMPConvAttrs,
       traits=("pure",))
define("hw.mac_dense", ("x", "w"), "dense layer as multiply-accumulate: parallel multipliers, one input per cycle",
       _mac_infer, _mac_kernel, HwMACAttrs, traits=("pure",))

__all__ = ["HwMACAttrs", "HwMPAttrs", "HwMPConvAttrs"]
