"""`c-sparse`: the C backend's lowering of pruned fixed-point matmuls onto compressed weight tables.

An fx.matmul whose weight W [D, H] is a weight with zeros (pruning folds its masks into the
weights, so pruned weights arrive as exact zeros) gets `sparse = true` when the compressed table is
smaller than the dense one: per output column h, the rows j with W[j, h] != 0 (column pointers,
row indices, values; see `csr_bytes`). The C renderer then writes only those terms, and the
emulator's op counts count only them. Skipping a zero term changes no sum (x · 0 = 0, integer sums
are exact), so outputs stay bit-exact.

Integer MP layers (fx.mp_dot, fx.mp_conv2d) stay dense: in margin propagation a zero weight is not
a no-op (|0 - x| and |0 + x| still enter the margin of every output), so pruning there means a
weight of 0, not a missing term.

An fx.conv2d with weight W [M, Cg, kh, kw] goes sparse by the same rule, with a table per output
channel oc: channel pointers (int32), the input channel (uint16) and tap row and column (uint8) of each
non-zero weight, and its value (`conv_table_bytes`). The C then loops over output positions and
those taps only, skipping taps that fall in the padding as the dense loop does.
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


def conv_table_bytes(w: np.ndarray, width: int) -> int:
    """Bytes of the compressed table of a conv weight [M, Cg, kh, kw]: int32 channel pointers, and per
    non-zero its input channel (uint16), tap row and column (uint8) and value."""
    return 4 * (w.shape[0] + 1) + int(np.count_nonzero(w)) * (4 + _bytes(width))


def _smaller(op, graph: Graph) -> bool:
    w = op.operands[1]
    rank = 2 if op.kind == "fx.matmul" else 4
    arr = graph.weights.get(w.name) if w.is_weight and len(w.type.shape) == rank else None
    if arr is None or (rank == 4 and (w.type.shape[1] > 1 << 16 or max(w.type.shape[2:]) > 255)):
        return False
    table = csr_bytes if rank == 2 else conv_table_bytes
    return table(arr, w.type.dtype.width) < dense_bytes(arr, w.type.dtype.width)


@register_pass("c-sparse", summary="compressed weight tables for fx.matmul/fx.conv2d where smaller than dense")
def c_sparse(graph: Graph, ctx) -> dict:
    """Set `sparse` on fx.matmul and fx.conv2d whose compressed weight table is smaller; returns counts."""
    stats = {"sparse": 0, "dense": 0}
    for op in graph.ops:
        if op.kind not in ("fx.matmul", "fx.conv2d"):
            continue
        small = _smaller(op, graph)
        op.attrs = dataclasses.replace(op.attrs, sparse=bool(small))
        stats["sparse" if small else "dense"] += 1
    return stats
