"""`remove-identity`: drop ops that pass their operand through unchanged.

Removes `nn.identity`, `nn.dropout` (inference mode) and `nn.cast` to the operand's own dtype by
wiring their users to the operand. The one identity that stays is the one that keeps a graph
output a distinct value: its operand is a graph input, a weight or another graph output (an
input wired straight to an output, or one value listed as two outputs). A dropout or same-dtype
cast in that position becomes that identity, so the canonical form has only one such op kind.
Standard cleanup, not part of the MP method.
"""
from __future__ import annotations

from mpc.ir import Graph, Op, Rewriter, Value, apply_patterns
from mpc.passmanager import register_pass


def _keeps_output_distinct(graph: Graph, op: Op) -> bool:
    """Whether removing `op` would make an output alias an input, a weight or another output."""
    x, y = op.operands[0], op.result
    if not any(v is y for v in graph.outputs):
        return False
    return x.is_weight or any(v is x for v in graph.inputs) or any(v is x for v in graph.outputs)


@register_pass("remove-identity", summary="remove identity, dropout and same-dtype cast ops")
def remove_identity(graph: Graph, ctx) -> dict:
    """Wire users of pass-through ops to their operand; returns {'removed', 'to_identity'}."""
    stats = {"removed": 0, "to_identity": 0}

    def pattern(op: Op, rw: Rewriter) -> Value | None:
        if op.kind == "nn.cast" and op.attrs.to != op.operands[0].type.dtype:
            return None
        if not _keeps_output_distinct(graph, op):
            stats["removed"] += 1
            return op.operands[0]
        if op.kind == "nn.identity":
            return None
        stats["to_identity"] += 1
        return rw.op("nn.identity", [op.operands[0]])

    apply_patterns(graph, {"nn.identity": pattern, "nn.dropout": pattern, "nn.cast": pattern})
    return stats
