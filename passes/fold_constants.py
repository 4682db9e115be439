"""`fold-constants`: evaluate ops whose operands are all weights, and fold no-op shape ops.

An op of a kind with the `foldable` trait whose operands are all weights is run through the
interpreter's `apply` (its reference kernel) and replaced by a new weight named
`<first operand>.<kind>` (for example `@fc0.weight.transpose`); a derived weight equal to an
existing one of that name is reused, so the names stay stable when the pass runs twice. When the
folded value is a graph output, `replace_all_uses` keeps the output's name with an `nn.identity` of
the new weight: outputs never alias weights. Kinds without the trait are never folded: `nn.identity`
(it is what keeps such outputs distinct), MP ops (layers of the datapath, calibrated later) and
any op with a seed or state; nor is an op without operands.

It also folds shape algebra that would otherwise hide weights from later passes (fold-batchnorm
wants `nn.matmul(x, @w)`, not `nn.matmul(x, nn.transpose(@w))`): a transpose with the identity
permutation or a reshape to the operand's own type is dropped, a transpose of a transpose becomes
one transpose, and a reshape of a reshape becomes one when the outer shape copies no dim (0).
Standard cleanup, not part of the MP method.
"""
from __future__ import annotations

import numpy as np

from mpc.ir import Graph, InferError, Op, Rewriter, Value, apply, apply_patterns, known_kinds
from mpc.passmanager import register_pass


def derived_weight(graph: Graph, rw: Rewriter, name: str, array: np.ndarray) -> Value:
    """`@name` when it already holds exactly `array`, else a new weight (renamed on collision).

    Derived weights are pure functions of their sources, so equal ones can be shared; gemm-to-matmul
    uses this too."""
    old = graph.weights.get(name)
    if old is not None and old.dtype == array.dtype and np.array_equal(old, array, equal_nan=True):
        return graph.weight(name)
    return rw.weight(name, array)


def _foldable(op: Op) -> bool:
    """The op's kind is declared foldable and all its operands are weights."""
    return "foldable" in op.opdef.traits and bool(op.operands) and all(v.is_weight for v in op.operands)


def _evaluate(graph: Graph, op: Op, rw: Rewriter) -> list[Value]:
    """The new weights an all-weight op computes, through its reference kernel."""
    out = apply(op, [graph.weights[v.name] for v in op.operands])
    base = f"{op.operands[0].name}.{op.kind.split('.', 1)[1]}"
    arrays = [np.asarray(a, dtype=r.type.dtype.numpy) for a, r in zip(out, op.results)]
    for a, r in zip(arrays, op.results):
        if a.shape != r.type.shape:  # a kernel that disagrees with infer_type is a bug there
            raise AssertionError(f"{op!r}: kernel gave shape {a.shape}, type says {r.type}")
    return [derived_weight(graph, rw, base, a) for a in arrays]


def _transpose(op: Op, rw: Rewriter) -> Value | None:
    """transpose(transpose(x)) -> one transpose; the identity permutation -> x."""
    x, perm = op.operands[0], op.attrs.perm
    if x.producer is not None and x.producer.kind == "nn.transpose":
        x, perm = x.producer.operands[0], tuple(x.producer.attrs.perm[p] for p in perm)
    if perm == tuple(range(len(perm))):
        return x
    return None if x is op.operands[0] else rw.op("nn.transpose", [x], {"perm": perm})


def _reshape(op: Op, rw: Rewriter) -> Value | None:
    """reshape(reshape(x)) -> one reshape unless the outer copies a dim (0); same type -> x."""
    x = op.operands[0]
    if x.producer is not None and x.producer.kind == "nn.reshape" and 0 not in op.attrs.shape:
        x = x.producer.operands[0]
    if x.type == op.result.type:
        return x
    if x is op.operands[0] or _infer(op, [x]) != [op.result.type]:
        return None
    return rw.op("nn.reshape", [x], op.attrs)


def _infer(op: Op, operands: list[Value]) -> list | None:
    """Result types of `op`'s kind and attributes on other operands, or None where they do not fit
    (symbolic dims can make a reshape well-typed on its operand but not on the operand's source)."""
    try:
        return op.opdef.infer([v.type for v in operands], op.attrs)
    except InferError:
        return None


_SIMPLIFY = {"nn.transpose": _transpose, "nn.reshape": _reshape}


@register_pass("fold-constants", summary="evaluate all-weight ops into new weights; fold no-op shape ops")
def fold_constants(graph: Graph, ctx) -> dict:
    """Fold constants and shape algebra; returns {'folded', 'simplified'} op counts."""
    stats = {"folded": 0, "simplified": 0}

    def pattern(op: Op, rw: Rewriter) -> Value | list[Value] | None:
        simplify = _SIMPLIFY.get(op.kind)
        repl = simplify(op, rw) if simplify else None  # first: a no-op on a weight needs no copy
        if repl is not None:
            stats["simplified"] += 1
            return repl
        if not _foldable(op):
            return None
        stats["folded"] += 1
        return _evaluate(graph, op, rw)

    apply_patterns(graph, dict.fromkeys(known_kinds(), pattern))
    return stats
