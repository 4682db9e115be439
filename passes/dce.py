"""`dce`: dead-code elimination of ops and weights.

An op is dead when none of its results is used by a live op or listed as a graph output (nn ops
have no side effects). One backward sweep finds every dead op, so chains die in one run; then
weights that no remaining op or output refers to leave the table (this is how passes that derive
new weights, such as fold-batchnorm, drop the originals). Graph inputs are the interface and
stay, used or not. Standard cleanup, not part of the MP method.
"""
from __future__ import annotations

from mpc.ir import Graph, erase
from mpc.passmanager import register_pass


@register_pass("dce", summary="remove unused ops, then weights nothing uses")
def dce(graph: Graph, ctx) -> dict:
    """Erase dead ops (last first) and unused weights; returns {'ops', 'weights'} removed."""
    live = {id(v) for v in graph.outputs}
    dead = []
    for op in reversed(graph.ops):
        if any(id(r) in live for r in op.results):
            live.update(id(v) for v in op.operands)
        else:
            dead.append(op)
    for op in dead:  # users come before their producers in this (reversed) order
        erase(graph, op)
    used = set(graph.used_weights())
    unused = sorted(name for name in graph.weights if name not in used)
    for name in unused:
        graph.remove_weight(name)
    return {"ops": len(dead), "weights": len(unused)}
