"""Fixed-point forms of the spiking ops the lif target emits: the quantize pass's rules for
snn.encode (constant current), snn.lif, snn.maxpool (integer running counts) and snn.decode
(membrane with beta = 1, count, rate).

The input current of a neuron is quantized like any activation (W bits, its fraction F from the
calibration range); threshold θ and initial membrane u_0 = v0·θ become stored integers at F; the
membrane width is sized so that it never overflows over T steps (|u_0| + θ + T·max|x|); a leak
β < 1 becomes the stored integer round(β·2^(W-1)) applied with a rounding shift (β = 1: none).
Spikes are fx<2,0> (0 or 1), so the synapse after a neuron is an ordinary fx.matmul whose
accumulator fraction is the weight's. The membrane readout (the mean input current over T) is the
exact sum over time read at F + log2 T: T must be a power of two (no division in the datapath).
The rules take the quantize pass's `_Quantizer` (passes/quantize.py) as `Q`.
"""
from __future__ import annotations

import math

import numpy as np

from mpc.errors import UnsupportedOp
from mpc.fx.formats import bits_for, fx
from mpc.ir import DType, Op, Value
from mpc.ir.ops_fx_snn import MEM_MAX, SumMode
from mpc.ir.ops_snn import DecodeMode, EncodeMode


def _encode(Q, op: Op) -> Value:
    if op.attrs.mode is not EncodeMode.CONSTANT:
        raise UnsupportedOp(op.kind, op.loc, f"fixed point encodes a constant current only, got mode "
                                             f"{op.attrs.mode.value} (convert with the default encoding)")
    enc = Q.emit("fx.encode", [Q.activation(op.operands[0], op.loc)], {"timesteps": op.attrs.timesteps}, op.loc)
    Q.narrow[id(op.result)] = enc   # already W bits: the neuron after it reads it as is
    return enc


def _stored(Q, name: str, real: np.ndarray, frac: int, lowest: int | None = None) -> tuple[Value, np.ndarray]:
    """A weight `@name` of stored integers round(real·2^frac) (at least `lowest`), typed to fit them."""
    q = np.floor(np.ldexp(np.asarray(real, np.float64), frac) + 0.5).astype(np.int64)
    if lowest is not None:
        q = np.maximum(q, lowest)
    dt = fx(bits_for(int(np.abs(q).max(initial=1))), frac)
    Q.record("@" + name, "lif state", dt, np.ldexp(q.astype(np.float64), -frac))
    return Q.g.add_weight(name, q.astype(dt.numpy), dtype=dt), q


def _lif(Q, op: Op) -> Value:
    a = op.attrs
    if len(op.operands) > 2:
        raise UnsupportedOp(op.kind, op.loc, f"recurrent weight @{op.operands[2].name}: fx.lif has no recurrent "
                                             "operand (fixed point supports feed-forward LIF layers only)")
    x = Q.activation(op.operands[0], op.loc)
    xd, steps = x.type.dtype, x.type.shape[0]
    theta_name = op.operands[1].name
    theta, tq = _stored(Q, f"{theta_name}.fx", Q.g.weights[theta_name], xd.frac, lowest=1)
    u0_real = np.ldexp(np.floor(a.v0 * tq.astype(np.float64) + 0.5), -xd.frac)
    u0, uq = _stored(Q, f"{theta_name}.u0.fx", u0_real, xd.frac)
    bound = int(np.abs(uq).max(initial=0)) + int(tq.max(initial=1)) + steps * (1 << (xd.width - 1)) + 1
    mem_bits = bits_for(bound)
    beta_frac = 0 if a.beta == 1 else xd.width - 1
    beta = 1 if a.beta == 1 else math.floor(math.ldexp(a.beta, beta_frac) + 0.5)
    if mem_bits > MEM_MAX or mem_bits + beta_frac + 1 > 63:
        raise UnsupportedOp(op.kind, op.loc, f"its membrane needs {mem_bits} bits over {steps} steps (too wide)")
    attrs = {"mem_bits": mem_bits, "beta": beta, "beta_frac": beta_frac, "reset": a.reset,
             "refractory": a.refractory, "rounding": Q.rounding, "overflow": Q.overflow}
    spikes = Q.emit("fx.lif", [x, theta, u0], attrs, op.loc)
    Q.narrow[id(op.result)] = spikes   # the next synapse multiplies the 0/1 spikes as they are
    return spikes


def _decode(Q, op: Op) -> Value:
    a = op.attrs
    modes = {DecodeMode.MEMBRANE: SumMode.MEAN, DecodeMode.RATE: SumMode.MEAN, DecodeMode.COUNT: SumMode.SUM}
    if a.mode not in modes or (a.mode is DecodeMode.MEMBRANE and a.beta != 1):
        raise UnsupportedOp(op.kind, op.loc, f"fixed point reads out membrane (beta = 1), rate or count, "
                                             f"got mode {a.mode.value} with beta {a.beta}")
    x = Q.wide(op.operands[0], op.loc)
    xd, steps = x.type.dtype, x.type.shape[0]
    mode = modes[a.mode]
    if mode is SumMode.MEAN and steps & (steps - 1):
        raise UnsupportedOp(op.kind, op.loc, f"fixed point reads the mean over T steps with a shift: T must be "
                                             f"a power of two, got {steps} (--timesteps)")
    shift = steps.bit_length() - 1 if mode is SumMode.MEAN else 0
    width = xd.width + (steps - 1).bit_length()   # the exact sum of T values
    if width > 62:
        raise UnsupportedOp(op.kind, op.loc, f"the sum over {steps} steps needs {width} bits (> 62)")
    to: DType = fx(width, xd.frac + shift)
    return Q.emit("fx.decode", [x], {"to": to, "mode": mode, "overflow": Q.overflow}, op.loc)


def time_major(graph, starts: tuple[str, ...], ends: tuple[str, ...]) -> set[int]:
    """Ids of the values that are time-major [T, N, ...]: results of a `starts` op and of every op
    fed by one, up to an `ends` op (whose result is [N, ...] again)."""
    timed: set[int] = set()
    for op in graph.ops:
        if op.kind in starts or (op.kind not in ends and any(id(v) in timed for v in op.operands)):
            timed.update(id(r) for r in op.results)
    return timed


def _maxpool(Q, op: Op) -> Value:
    """snn.maxpool -> fx.snn_maxpool on the spikes as they are (the same leader rule, integer counts)."""
    x = Q.activation(op.operands[0], op.loc)
    y = Q.emit("fx.snn_maxpool", [x], {"kernel": op.attrs.kernel, "strides": op.attrs.strides}, op.loc)
    Q.narrow[id(op.result)] = y   # spikes in, spikes out: the next synapse reads them as they are
    return y


SNN_RULES = {"snn.encode": _encode, "snn.lif": _lif, "snn.decode": _decode, "snn.maxpool": _maxpool}
