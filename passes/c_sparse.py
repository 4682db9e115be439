"""`c-sparse`: the C backend's lowering of pruned fixed-point matmuls onto compressed weight tables.

An fx.matmul whose weight W [D, H] is a weight with zeros (pruning folds its masks into the
weights, so pruned weights arrive as exact zeros) gets `sparse = true` when the compressed table is
smaller than the dense one: per output column h, the rows j with W[j, h] != 0 (column pointers,
row indices, values; see `csr_bytes`). The C renderer then writes only those terms, and the
emulator's op counts count only them. Skipping a zero term changes no sum (x · 0 = 0, integer sums
are exact), so outputs stay bit-exact.

Integer MP layers (fx.mp_dot, fx.mp_conv2d) stay dense: in margin propagation a zero weight is not
a no-op (|0 - x| and |0 + x| still enter the margin of every output), so pruning there means a
weight of 0, not a missing term. fx.conv2d stays dense too (not lowered yet).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from mpc.ir import Graph
from mpc.passmanager import register_pass


def _bytes(width: int) -> int:
    # the C99 container of a signed width (int8_t .. int64_t), as the C renderer picks it
    return next(b for b in (8, 16, 32, 64) if b >= width) // 8


def index_ctype(d: int) -> str:
    """The C type of a row index below d."""
    return "uint16_t" if d <= 1 << 16 else "int32_t"


def csr_bytes(w: np.ndarray, width: int) -> int:
    """Bytes of the compressed table of w [D, H]: int32 column pointers, row indices, values."""
    nnz = int(np.count_nonzero(w))
    idx = 2 if index_ctype(w.shape[0]) == "uint16_t" else 4
    val = _bytes(width)
    return 4 * (w.shape[1] + 1) + nnz * (idx + val)


def dense_bytes(w: np.ndarray, width: int) -> int:
    """Bytes of the dense table of w."""
    return w.size * (_bytes(width))


@register_pass("c-sparse", summary="compressed weight tables for fx.matmul where they are smaller than dense")
def c_sparse(graph: Graph, ctx) -> dict:
    """Set `sparse` on fx.matmul with a 2-D weight whose compressed table is smaller; returns counts."""
    stats = {"sparse": 0, "dense": 0}
    for op in graph.ops:
        if op.kind != "fx.matmul":
            continue
        w = op.operands[1]
        arr = graph.weights.get(w.name) if w.is_weight and len(w.type.shape) == 2 else None
        small = arr is not None and csr_bytes(arr, w.type.dtype.width) < dense_bytes(arr, w.type.dtype.width)
        op.attrs = dataclasses.replace(op.attrs, sparse=bool(small))
        stats["sparse" if small else "dense"] += 1
    return stats
