"""The `np` op family: ops of the NumPy backend's lowering, which name a compiled kernel of model.py.

    np.conv2d_fused(x, w[, b])  nn.conv2d, then (if relu) nn.relu, then (if pool_kernel) nn.maxpool2d
    np.matmul_fast(a, b)        nn.matmul, run on numba's threads in model.py

They compute exactly what the nn ops they replace compute (their reference kernels compose the nn
ones), so the interpreter runs a lowered graph and snippet tests check the lowering. The pass
`fuse-conv-epilogue` produces them; which kernel model.py calls is then read off the op kind, not
decided while rendering. The max-pool epilogue is the `pool_*` fields, named like nn.maxpool2d's
attributes; an empty `pool_kernel` means no pool.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from mpc import kernels_np as K
from mpc.ir.opdefs import InferError, define
from mpc.ir.ops_nn import PURE, PoolAttrs, _conv_infer, _matmul_infer, _pool_infer, folded


@dataclass(frozen=True)
class ConvFusedAttrs:
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilations: tuple[int, int] = (1, 1)
    group: int = 1
    relu: bool = False
    pool_kernel: tuple[int, ...] = ()
    pool_strides: tuple[int, int] = (1, 1)
    pool_pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    pool_dilations: tuple[int, int] = (1, 1)
    pool_ceil_mode: bool = False


POOL_FIELDS = ("kernel", "strides", "pads", "dilations", "ceil_mode")


def pool_attrs(a: ConvFusedAttrs) -> PoolAttrs | None:
    """The max-pool epilogue as nn.maxpool2d attributes, or None without one."""
    if not a.pool_kernel:
        return None
    return PoolAttrs(**{f: getattr(a, f"pool_{f}") for f in POOL_FIELDS})


def _fused_infer(types, a):
    defaults = ConvFusedAttrs()
    if not a.pool_kernel:
        stray = [f.name for f in fields(a) if f.name.startswith("pool_") and getattr(a, f.name) !=
                 getattr(defaults, f.name)]
        if stray:
            raise InferError(f"{stray[0]} given without pool_kernel")
    elif len(a.pool_kernel) != 2:
        raise InferError(f"pool_kernel must have 2 entries, got {list(a.pool_kernel)}")
    y = _conv_infer(types, a)
    pool = pool_attrs(a)
    return _pool_infer(y, pool) if pool else y


def _conv2d_fused(k, x, w, b=None):
    a = k.attrs
    y = folded(K.conv2d)(x, w, b, a.strides, a.pads, a.dilations, a.group)
    y = np.maximum(y, y.dtype.type(0)) if a.relu else y
    if not a.pool_kernel:
        return y
    return folded(K.maxpool2d)(y, a.pool_kernel, a.pool_strides, a.pool_pads, a.pool_dilations, a.pool_ceil_mode)


define("np.conv2d_fused", ("x", "w", "b?"), "nn.conv2d with a fused relu and max-pool epilogue (NumPy backend)",
       _fused_infer, _conv2d_fused, ConvFusedAttrs, traits=PURE)
define("np.matmul_fast", ("a", "b"), "nn.matmul run on numba's threads (NumPy backend)", _matmul_infer,
       lambda k, x, w: np.matmul(x, w), traits=PURE)

__all__ = ["POOL_FIELDS", "ConvFusedAttrs", "pool_attrs"]
