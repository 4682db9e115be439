"""`gemm-to-matmul`: lower `nn.gemm` to `nn.matmul` + `nn.add`.

ONNX Gemm is alpha * op(a) @ op(b) + beta * c. Backends only need matmul and add:
- trans_a / trans_b: a weight operand is replaced by its transpose, a new weight `@<name>.T`;
  any other operand gets an `nn.transpose {perm = [1, 0]}`.
- alpha != 1 is folded into whichever matmul operand is a weight (b first, then a) as a new weight
  `@<name>.alpha`; when neither is, the product is multiplied by a scalar weight `@gemm.alpha`.
- beta != 1 is folded into c when c is a weight (`@<name>.beta`), else c is multiplied by a scalar
  weight `@gemm.beta`. Without c there is no add.
Scaling is computed in float64 and cast to the operand's dtype. A derived weight equal to an existing
one of the same name is reused, so two gemms sharing `@w` share `@w.T`.
Standard lowering, not part of the MP method.
"""
from __future__ import annotations

import numpy as np

from mpc.ir import Graph, Op, Rewriter, Value, apply_patterns
from mpc.passmanager import register_pass

from .fold_constants import derived_weight


def _prepare(graph: Graph, rw: Rewriter, v: Value, transpose: bool, scale: float) -> Value:
    """`v`, transposed and scaled; only a weight may be scaled here (callers make sure)."""
    if not v.is_weight:
        return rw.op("nn.transpose", [v], {"perm": (1, 0)}) if transpose else v
    if not transpose and scale == 1.0:
        return v
    array = graph.weights[v.name]
    name = v.name + (".T" if transpose else "") + (".alpha" if scale != 1.0 else "")
    exact = array.astype(np.float64)
    return derived_weight(graph, rw, name, ((exact.T if transpose else exact) * scale).astype(array.dtype))


def _scaled(graph: Graph, rw: Rewriter, v: Value, scale: float, name: str) -> Value:
    """`v * scale`: folded into a new weight when `v` is one, else an nn.mul by a scalar weight."""
    if scale == 1.0:
        return v
    if v.is_weight:
        array = graph.weights[v.name]
        return derived_weight(graph, rw, f"{v.name}.{name}", (array.astype(np.float64) * scale).astype(array.dtype))
    factor = derived_weight(graph, rw, f"gemm.{name}", np.asarray(scale, dtype=v.type.dtype.numpy))
    return rw.op("nn.mul", [v, factor])


def _lower(graph: Graph, op: Op, rw: Rewriter) -> Value:
    """matmul(op(a), op(b)) [* alpha] [+ beta * c] for one nn.gemm."""
    a, b = op.operands[:2]
    at = op.attrs
    alpha_b = at.alpha if b.is_weight else 1.0
    alpha_a = at.alpha if a.is_weight and not b.is_weight else 1.0
    y = rw.op("nn.matmul", [_prepare(graph, rw, a, at.trans_a, alpha_a), _prepare(graph, rw, b, at.trans_b, alpha_b)])
    if not a.is_weight and not b.is_weight:
        y = _scaled(graph, rw, y, at.alpha, "alpha")
    if len(op.operands) == 3:
        y = rw.op("nn.add", [y, _scaled(graph, rw, op.operands[2], at.beta, "beta")])
    return y


@register_pass("gemm-to-matmul", summary="lower nn.gemm to nn.matmul + nn.add (transposes and scales folded)")
def gemm_to_matmul(graph: Graph, ctx) -> dict:
    """Lower every nn.gemm; returns {'lowered'}."""
    return {"lowered": apply_patterns(graph, {"nn.gemm": lambda op, rw: _lower(graph, op, rw)})}
