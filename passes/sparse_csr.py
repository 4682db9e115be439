"""`sparse-csr`: the NumPy backend's lowering of sparse dense layers onto compressed storage.

Each `nn.matmul` / `np.matmul_fast` whose second operand is a 2-D weight with density at most
`max_density` (default 30%) becomes `sp.matmul_csr(x, @w.csr_data, @w.csr_indices, @w.csr_indptr)`:
W's non-zeros stored row by row of Wᵀ (one row per output), so model.py's compiled kernel
(mpc.sparse.kernels.csr_matmul) does work proportional to the non-zeros instead of D·H. The numbers
are those of the dense product up to the order of the additions (zeros are skipped, not added).
Standard backend lowering, the execution side of LBI pruning (passes/lbi_prune.py, passes/fuse.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpc.errors import BadFlag
from mpc.ir import Graph, Op, Rewriter, apply_patterns
from mpc.passmanager import register_pass


@dataclass(frozen=True)
class SparseCSROptions:
    """Layers whose weight density is at most max_density run in CSR."""

    max_density: float = 0.3

    def __post_init__(self):
        if not 0.0 <= self.max_density <= 1.0:
            raise BadFlag(f"sparse-csr: option max_density must be in [0, 1], got {self.max_density!r}")


def _csr_arrays(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data, indices, indptr) of w.T, pure NumPy (the same layout as mpc.sparse.kernels.csr_from_dense)."""
    wt = np.ascontiguousarray(w.T)
    rows, cols = np.nonzero(wt)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=wt.shape[0]))]).astype(np.int64)
    return wt[rows, cols], cols.astype(np.int64), indptr


@register_pass("sparse-csr", summary="numpy lowering: matmuls by weights under 30% density into CSR "
                                     "(sp.matmul_csr)", options=SparseCSROptions)
def sparse_csr(graph: Graph, ctx, opts: SparseCSROptions) -> dict:
    """Rewrite sparse matmuls in place; statistics: csr (layers rewritten)."""
    def rewrite(op: Op, rw: Rewriter):
        w = op.operands[1]
        arr = rw.array(w) if w.is_weight else None
        if arr is None or arr.ndim != 2 or arr.size == 0 or np.count_nonzero(arr) > opts.max_density * arr.size:
            return None
        data, indices, indptr = _csr_arrays(arr)
        operands = [op.operands[0], rw.weight(f"{w.name}.csr_data", data),
                    rw.weight(f"{w.name}.csr_indices", indices), rw.weight(f"{w.name}.csr_indptr", indptr)]
        return rw.op("sp.matmul_csr", operands, {"n_in": int(arr.shape[0])})

    return {"csr": apply_patterns(graph, {"nn.matmul": rewrite, "np.matmul_fast": rewrite})}
