"""Sparse kernels: y = x @ W with W stored as CSR over its output neurons, skipping zero weights.

numpy + numba only: the NumPy backend embeds this module's source in model.py (like the MP kernels).
`csr_from_dense(w)` builds the three arrays (values, input indices, row pointers) of Wᵀ, one CSR row
per output neuron; `csr_matmul(x, data, indices, indptr)` multiplies a batch by it, touching only the
stored entries (cost ∝ nnz instead of D·H).
"""
import numba
import numpy as np


def csr_from_dense(w):
    """(data, indices, indptr) of w.T in CSR: one row per output column of w [D, H]."""
    wt = np.ascontiguousarray(np.asarray(w).T)
    rows, cols = np.nonzero(wt)
    indptr = np.zeros(wt.shape[0] + 1, np.int64)
    np.add.at(indptr, rows + 1, 1)
    return wt[rows, cols], cols.astype(np.int64), np.cumsum(indptr)


@numba.njit(cache=True, parallel=True)
def _csr_rows(xt, data, indices, indptr, out_t):
    # one output neuron per thread; the inner loop runs along the batch, contiguous in xt and out_t
    for h in numba.prange(indptr.shape[0] - 1):
        for j in range(indptr[h], indptr[h + 1]):
            wv = data[j]
            src = xt[indices[j]]
            for n in range(xt.shape[1]):
                out_t[h, n] += wv * src[n]


def csr_matmul(x, data, indices, indptr):
    """x [.., D] @ W, W given as CSR of W.T; leading dims are flattened around the compiled loop."""
    lead = x.shape[:-1]
    xt = np.ascontiguousarray(x.reshape(-1, x.shape[-1]).T)
    out_t = np.zeros((indptr.shape[0] - 1, xt.shape[1]), x.dtype)
    if out_t.size:
        _csr_rows(xt, data.astype(x.dtype), indices, indptr, out_t)
    return np.ascontiguousarray(out_t.T).reshape(lead + (out_t.shape[0],))
