"""`fold-batchnorm`: fold inference BatchNorm into the conv / gemm / matmul that feeds it.

BN(y) = s * y + t per channel (axis 1), with s = scale / sqrt(var + epsilon) and
t = bias - mean * s. When y = L(x; @w) [+ @b] with L one of
- `nn.conv2d(x, @w[, @b])`: s scales the output channels, w's axis 0,
- `nn.gemm(x, @w[, @c])`: s scales op(w)'s columns (w's rows with trans_b),
- `nn.matmul(x, @w)` with a 2-D result and a 2-D weight: s scales w's columns,
optionally followed by `nn.add` of a bias weight that keeps the type (per channel or broadcast),
the BN folds into new weights `@<w>.bnfold` and `@<bias>.bnfold`. The bias that comes last absorbs t:
the add's bias, else L's own bias (conv b, gemm c with beta folded in, so beta becomes 1), else a new
one named after the BN's bias (a new bias operand for conv/gemm, a new `nn.add` for matmul).
Everything is computed in float64 and cast to the weight's dtype. Weights are never changed in
place; the old ones stay for other users until dce drops them. The folded chain is erased, and the
new ops carry the BN's location: the last of them computes what the BN computed, and no value of
the old chain (the conv's own output, say) is computed anywhere any more, so per-layer comparisons
that take the last op of a location as that node's output stay right.

A BN stays when its params are not all weights, var + epsilon is not positive, its input has other
users or is a graph output (as is the add's operand), or the producer is anything else.
Standard inference-time folding, not part of the MP method.
"""
from __future__ import annotations

import numpy as np

from mpc.ir import Graph, Op, Rewriter, Value, apply_patterns, erase, with_attrs
from mpc.passmanager import register_pass

F64 = np.float64

# How s (float64, one per output channel) scales each producer's weight operand.
_SCALE_WEIGHT = {
    "nn.conv2d": lambda w, s, attrs: w * s.reshape(-1, 1, 1, 1),
    "nn.gemm": lambda w, s, attrs: w * (s[:, None] if attrs.trans_b else s[None, :]),
    "nn.matmul": lambda w, s, attrs: w * s[None, :],
}


def _affine(graph: Graph, bn: Op) -> tuple[np.ndarray, np.ndarray] | None:
    """(s, t) in float64 with BN(y) = s * y + t per channel, or None when BN cannot fold."""
    if not all(v.is_weight for v in bn.operands[1:]):
        return None
    scale, bias, mean, var = (graph.weights[v.name].astype(F64) for v in bn.operands[1:])
    denom = var + F64(bn.attrs.epsilon)
    if not np.all(denom > 0):
        return None
    s = scale / np.sqrt(denom)
    return s, bias - mean * s


def _sole_use(graph: Graph, v: Value, user: Op) -> bool:
    """`v` is used once, by `user`, and is not a graph output."""
    if any(o is v for o in graph.outputs):
        return False
    return [id(u) for u in graph.users().get(id(v), [])] == [id(user)]


def _foldable_producer(graph: Graph, v: Value, user: Op) -> Op | None:
    """The conv/gemm/matmul defining `v` when its weights are constant and `user` is its only user."""
    op = v.producer
    if op is None or op.kind not in _SCALE_WEIGHT or not _sole_use(graph, v, user):
        return None
    if not all(w.is_weight for w in op.operands[1:]):
        return None
    if op.kind == "nn.matmul" and (op.result.type.rank != 2 or op.operands[1].type.rank != 2):
        return None
    return op


def _match(graph: Graph, bn: Op) -> tuple[Op, Op | None, Value | None] | None:
    """(producer, add or None, the add's bias weight or None) feeding `bn`, or None."""
    y = bn.operands[0]
    add = y.producer
    if add is None or add.kind != "nn.add":
        producer = _foldable_producer(graph, y, bn)
        return (producer, None, None) if producer else None
    if not _sole_use(graph, y, bn):
        return None
    for u, b in (add.operands, add.operands[::-1]):
        if b.is_weight and not u.is_weight and u.type == add.result.type:
            producer = _foldable_producer(graph, u, add)
            return (producer, add, b) if producer else None
    return None


def _own_bias(graph: Graph, lin: Op) -> tuple[Value | None, np.ndarray]:
    """The producer's bias operand and its float64 value (gemm's beta applied), or (None, 0)."""
    if len(lin.operands) < 3:
        return None, F64(0.0)
    bias = lin.operands[2]
    value = graph.weights[bias.name].astype(F64)
    return bias, value * F64(lin.attrs.beta) if lin.kind == "nn.gemm" else value


def _new_weight(rw: Rewriter, source: Value, value: np.ndarray, dtype) -> Value:
    """`@<source>.bnfold` holding `value` (float64) cast to `dtype`."""
    return rw.weight(f"{source.name}.bnfold", value.astype(dtype))


def _fold(graph: Graph, bn: Op, rw: Rewriter, chain, s: np.ndarray, t: np.ndarray) -> Value:
    """Emit the folded producer (and add) before `bn`; returns the value replacing BN's result."""
    lin, add, add_bias = chain
    w, bn_bias, dtype = lin.operands[1], bn.operands[2], lin.result.type.dtype.numpy
    w_arr = graph.weights[w.name]
    operands = [lin.operands[0], _new_weight(rw, w, _SCALE_WEIGHT[lin.kind](w_arr.astype(F64), s, lin.attrs),
                                             w_arr.dtype)]
    own, own_value = _own_bias(graph, lin)
    absorbs_t = add is None and lin.kind != "nn.matmul"  # the producer's bias slot comes last
    if own is not None or absorbs_t:
        value = s * own_value + (t if absorbs_t else 0.0)
        operands.append(_new_weight(rw, own or bn_bias, value, graph.weights[own.name].dtype if own else dtype))
    attrs = with_attrs(lin.attrs, beta=1.0) if lin.kind == "nn.gemm" else lin.attrs
    y = rw.op(lin.kind, operands, attrs)
    if absorbs_t:
        return y
    channel = (-1,) + (1,) * (lin.result.type.rank - 2)  # per-channel vectors, aligned to axis 1
    b_value = graph.weights[add_bias.name].astype(F64) if add_bias is not None else F64(0.0)
    b_dtype = graph.weights[add_bias.name].dtype if add_bias is not None else dtype
    b_new = _new_weight(rw, add_bias or bn_bias, s.reshape(channel) * b_value + t.reshape(channel), b_dtype)
    return rw.op("nn.add", [y, b_new])


@register_pass("fold-batchnorm", summary="fold inference BatchNorm into the preceding conv/gemm/matmul")
def fold_batchnorm(graph: Graph, ctx) -> dict:
    """Fold every foldable nn.batchnorm; returns {'folded', 'kept'}."""
    stats = {"folded": 0, "kept": 0}
    folded_chains: list[Op] = []

    def pattern(bn: Op, rw: Rewriter) -> Value | None:
        affine, chain = _affine(graph, bn), _match(graph, bn)
        if affine is None or chain is None:
            stats["kept"] += 1
            return None
        stats["folded"] += 1
        lin, add, _ = chain
        folded_chains.extend(op for op in (add, lin) if op is not None)
        return _fold(graph, bn, rw, chain, *affine)

    apply_patterns(graph, {"nn.batchnorm": pattern})
    for op in folded_chains:  # each add before its producer: users go first
        erase(graph, op)
    return stats
