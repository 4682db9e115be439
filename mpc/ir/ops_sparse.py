"""The `sp` op family: weight masks and compressed sparse layers.

    sp.mask(w, mask) {nnz, size}              w where mask is true, else 0 (a pruned weight)
    sp.matmul_csr(x, data, indices, indptr)   x @ W with W stored as CSR rows of W.T (one per output)

A mask sits on the weight operand of any synapse op (nn.matmul, nn.gemm, nn.conv2d, mp.dot,
mp.conv2d, and whatever consumes a weight later): the synapse sees the masked weight, so a new
neuron or synapse kind needs no mask-specific code. `nnz` and `size` print the mask's count in the
text form (`{nnz = 1234, size = 8192}`); the verifier checks them and the mask's shape against the
weight. `fuse` folds masks into new weights; the NumPy backend's `sparse-csr` lowering turns sparse
matmuls into `sp.matmul_csr`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpc.ir.opdefs import InferError, define
from mpc.ir.types import DType, TensorType


@dataclass(frozen=True)
class MaskAttrs:
    nnz: int
    size: int


@dataclass(frozen=True)
class CSRAttrs:
    n_in: int


def _mask_infer(types, a):
    w, m = types
    if m.dtype != DType.parse("bool"):
        raise InferError(f"mask must be bool, got {m}")
    if m.shape != w.shape:
        raise InferError(f"mask shape {list(m.shape)} differs from weight shape {list(w.shape)}")
    if w.is_static and int(np.prod(w.shape, dtype=np.int64)) != a.size:
        raise InferError(f"size = {a.size} but the weight has {int(np.prod(w.shape))} entries")
    if not 0 <= a.nnz <= a.size:
        raise InferError(f"nnz = {a.nnz} out of range [0, {a.size}]")
    return [w]


def _mask_verify(op, graph) -> None:
    m = op.operands[1]
    if m.is_weight:
        nnz = int(np.count_nonzero(graph.weights[m.name]))
        if nnz != op.attrs.nnz:
            raise InferError(f"nnz = {op.attrs.nnz} but mask @{m.name} has {nnz} non-zeros")


def _mask(k, w, m):
    return np.where(m, w, w.dtype.type(0))


def _csr_infer(types, a):
    x, data, indices, indptr = types
    if x.rank < 1 or x.shape[-1] != a.n_in:
        raise InferError(f"x must be [.., {a.n_in}], got {x}")
    if data.dtype != x.dtype or data.rank != 1:
        raise InferError(f"data must be {x.dtype}[nnz], got {data}")
    if indices.dtype != DType.parse("i64") or indices.shape != data.shape:
        raise InferError(f"indices must be i64{list(data.shape)}, got {indices}")
    if indptr.dtype != DType.parse("i64") or indptr.rank != 1 or indptr.shape[0] < 1:
        raise InferError(f"indptr must be i64[outputs + 1], got {indptr}")
    return [TensorType(x.dtype, x.shape[:-1] + (indptr.shape[0] - 1,))]


def dense_from_csr(data, indices, indptr, n_in: int) -> np.ndarray:
    """W [n_in, H] from the CSR rows of W.T (the reference the compiled kernel is checked against)."""
    wt = np.zeros((len(indptr) - 1, n_in), data.dtype)
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    wt[rows, indices] = data
    return wt.T


def _csr(k, x, data, indices, indptr):
    return np.matmul(x, dense_from_csr(data, indices, indptr, k.attrs.n_in))


# Pure, not foldable: folding a mask into a weight is fuse's job, which also removes dead neurons.
define("sp.mask", ("w", "mask"), "w where mask, else 0 (a pruned synapse weight)", _mask_infer, _mask,
       MaskAttrs, verify=_mask_verify, traits=("pure",))
define("sp.matmul_csr", ("x", "data", "indices", "indptr"), "x @ W, W stored as CSR rows of W.T",
       _csr_infer, _csr, CSRAttrs, traits=("pure",))
