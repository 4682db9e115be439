"""The `hop` op family: layered Hopfield networks solved by relaxation.

    hop.relax(x, theta0, bias, blocks*)   s = f(W s + theta0 x + bias), relaxed from s = 0
    hop.readout(s)                        the units [offset, offset + size) of the state (the output layer)

The state s [N, S] concatenates the layers' states (`sizes`, in layer order; the last layer is the
output). W is never one matrix in the IR: each nonzero block is its own weight operand, and `blocks`
says which layer couples to which (`"1<0"`: layer 1 receives from layer 0, a weight of shape
[n_1, n_0]), so the printed IR shows W's block structure and block shapes without the matrix.
theta0 [n_0, D] couples the input into layer 0 only. `acts` gives each layer's activation f.
`lam` records the connectivity W_lam = theta - theta^T + 2 lam theta^T the blocks were built with
(theta: the feedforward, block lower-triangular part): 0.5 feedforward, 1 symmetric, 0 skew-symmetric.
`schedule` is `sweeps` (layer-ordered Gauss-Seidel) or `jacobi`; the solver stops when an iteration
moves no unit by more than `tol`, or after `max_iter` iterations. `damping` g < 1 makes each layer
update f((1 - g) s_k + g u_k) (a forward-backward step: it converges for skew-symmetric W, where the
plain iteration can diverge). Kernels: mpc.hop.kernels.
"""
from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass

from mpc.hop import kernels as HK
from mpc.ir.opdefs import InferError, define
from mpc.ir.types import DType

FLOATS = (DType.f32, DType.f64)
_BLOCK = re.compile(r"^(\d+)<(\d+)$")


class Schedule(enum.Enum):
    """Relaxation schedule: layer-ordered Gauss-Seidel sweeps, or Jacobi iterations."""

    SWEEPS = "sweeps"
    JACOBI = "jacobi"


class Act(enum.Enum):
    """Per-layer activation f (the inverse of the derivative of the energy's G)."""

    IDENTITY = "identity"
    RELU = "relu"
    SIGMOID = "sigmoid"
    TANH = "tanh"


@dataclass(frozen=True)
class RelaxAttrs:
    sizes: tuple[int, ...]
    acts: tuple[Act, ...]
    blocks: tuple[str, ...]
    lam: float = 0.5
    schedule: Schedule = Schedule.SWEEPS
    tol: float = 1e-6
    max_iter: int = 100
    damping: float = 1.0


@dataclass(frozen=True)
class ReadoutAttrs:
    offset: int
    size: int


def couplings(a: RelaxAttrs) -> list[tuple[int, int]]:
    """The (receiving layer, sending layer) pair of every block, in operand order."""
    out = []
    for b in a.blocks:
        m = _BLOCK.match(b)
        if not m:
            raise InferError(f"hop.relax: block '{b}' is not written 'K<J' (layer K receives from layer J)")
        out.append((int(m.group(1)), int(m.group(2))))
    return out


def _check_attrs(a: RelaxAttrs) -> list[tuple[int, int]]:
    if not a.sizes or any(n < 1 for n in a.sizes):
        raise InferError(f"hop.relax: sizes must be >= 1, got {list(a.sizes)}")
    if len(a.acts) != len(a.sizes):
        raise InferError(f"hop.relax: {len(a.sizes)} layers but {len(a.acts)} activations")
    if not 0 < a.damping <= 1:
        raise InferError(f"hop.relax: damping must be in (0, 1], got {a.damping}")
    if not (a.tol >= 0 and math.isfinite(a.tol)) or a.max_iter < 1:
        raise InferError(f"hop.relax: tol must be finite and >= 0 and max_iter >= 1, got {a.tol}, {a.max_iter}")
    pairs = couplings(a)
    for k, j in pairs:
        if k == j or max(k, j) >= len(a.sizes):
            raise InferError(f"hop.relax: block '{k}<{j}' must couple two different layers of 0..{len(a.sizes) - 1}")
    if len(set(pairs)) != len(pairs):
        raise InferError("hop.relax: a block is listed twice")
    return pairs


def _relax_infer(types, a):
    x, theta0, bias, blocks = types[0], types[1], types[2], types[3:]
    pairs = _check_attrs(a)
    if x.dtype not in FLOATS or x.rank != 2:
        raise InferError(f"hop.relax wants a float input [N, D], got {x}")
    if any(t.dtype != x.dtype for t in types):
        raise InferError("hop.relax wants every operand in the input's dtype")
    if theta0.shape != (a.sizes[0], x.shape[1]):
        raise InferError(f"hop.relax: theta0 must be [{a.sizes[0]}, {x.shape[1]}], got {theta0}")
    if bias.shape != (sum(a.sizes),):
        raise InferError(f"hop.relax: bias must be [{sum(a.sizes)}], got {bias}")
    if len(blocks) != len(pairs):
        raise InferError(f"hop.relax: {len(pairs)} blocks listed but {len(blocks)} block operands given")
    for (k, j), t in zip(pairs, blocks):
        if t.shape != (a.sizes[k], a.sizes[j]):
            raise InferError(f"hop.relax: block '{k}<{j}' must be [{a.sizes[k]}, {a.sizes[j]}], got {t}")
    return [x.with_shape((x.shape[0], sum(a.sizes)))]


def _relax(k, x, theta0, bias, *blocks):
    a = k.attrs
    return HK.hop_relax(x, theta0, bias, blocks, a.sizes, [f.value for f in a.acts], couplings(a),
                        a.schedule is Schedule.JACOBI, a.tol, a.max_iter, a.damping)


def _readout_infer(types, a):
    s = types[0]
    if s.rank != 2 or a.offset < 0 or a.size < 1 or (isinstance(s.shape[1], int) and a.offset + a.size > s.shape[1]):
        raise InferError(f"hop.readout: units [{a.offset}, {a.offset + a.size}) are not inside a state {s}")
    return [s.with_shape((s.shape[0], a.size))]


define("hop.relax", ("x", "theta0", "bias", "blocks*"), "fixed point s = f(W s + theta0 x + bias) by relaxation",
       _relax_infer, _relax, RelaxAttrs, traits=("pure",))
define("hop.readout", ("s",), "units [offset, offset + size) of a Hopfield state", _readout_infer,
       lambda k, s: s[:, k.attrs.offset:k.attrs.offset + k.attrs.size], ReadoutAttrs, traits=("pure",))

__all__ = ["Act", "ReadoutAttrs", "RelaxAttrs", "Schedule", "couplings"]
