"""Graph-edit primitives and the one pattern-rewrite driver every rewrite pass uses.

Primitives keep uses and graph outputs consistent: replacing a graph output keeps the output's
user-facing name, and inserts an identity when the replacement is an input, a weight or already
another output. A pattern matches one op kind and returns replacement values, or None.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from mpc.errors import UNKNOWN, VerifyError
from mpc.ir.core import Graph, Op, Value
from mpc.ir.opdefs import InferError, lookup


def make_op(graph: Graph, kind: str, operands: list[Value], attrs: Any = None, loc=None) -> Op:
    """A new op (not yet inserted) with result types inferred from its declaration."""
    opdef = lookup(kind)
    if attrs is None or isinstance(attrs, dict):
        attrs = opdef.make_attrs(attrs or {})
    try:
        types = opdef.infer([v.type for v in operands], attrs)
    except InferError as e:
        raise VerifyError(loc or UNKNOWN, f"'{kind}': {e}") from None
    results = [Value(graph.fresh_name(), t) for t in types]
    return Op(kind, operands, results, attrs, loc or UNKNOWN)


def insert_before(graph: Graph, anchor: Op | None, ops: list[Op]) -> None:
    """Insert `ops` before `anchor` (at the end when anchor is None)."""
    i = len(graph.ops) if anchor is None else _index(graph, anchor)
    graph.ops[i:i] = ops


def _index(graph: Graph, op: Op) -> int:
    for i, o in enumerate(graph.ops):
        if o is op:
            return i
    raise ValueError(f"{op!r} is not in graph @{graph.name}")


def replace_all_uses(graph: Graph, old: Value, new: Value, exclude: Op | None = None) -> None:
    """Make every user of `old` (ops other than `exclude`, and graph outputs) use `new` instead.

    A graph input that is also an output stays that output (inputs are never renamed).
    """
    if old is new:
        return
    for op in graph.ops:
        if op is not exclude and any(v is old for v in op.operands):
            op.operands = [new if v is old else v for v in op.operands]
    if any(old is x for x in graph.inputs):
        return
    for i, v in enumerate(graph.outputs):
        if v is not old:
            continue
        name = old.name
        old.name = graph.fresh_name("dead")
        if new.is_weight or any(new is x for x in graph.inputs) or any(new is x for x in graph.outputs):
            ident = make_op(graph, "nn.identity", [new], loc=old.producer.loc if old.producer else None)
            ident.result.name = name
            insert_before(graph, None, [ident])
            graph.outputs[i] = ident.result
        else:
            new.name = name
            graph.outputs[i] = new


def erase(graph: Graph, op: Op) -> None:
    """Remove an op whose results are no longer used."""
    used = {id(v) for o in graph.ops if o is not op for v in o.operands} | {id(v) for v in graph.outputs}
    for r in op.results:
        if id(r) in used:
            raise VerifyError(op.loc, f"cannot erase '{op.kind}': %{r.name} is still used")
    graph.ops.pop(_index(graph, op))


class Rewriter:
    """What a pattern gets to build its replacement: new ops go before the matched op."""

    def __init__(self, graph: Graph, anchor: Op):
        self.graph, self.anchor = graph, anchor

    def op(self, kind: str, operands: list[Value], attrs: Any = None, loc=None) -> Value:
        """Insert a new single-result op before the anchor; returns its result."""
        new = make_op(self.graph, kind, operands, attrs, loc or self.anchor.loc)
        insert_before(self.graph, self.anchor, [new])
        return new.result

    def weight(self, name: str, array: np.ndarray, dtype=None) -> Value:
        """Add a new weight (renamed deterministically on collision), of element type `dtype` if given."""
        return self.graph.add_weight(name, array, dtype=dtype)

    def array(self, v: Value) -> np.ndarray | None:
        """The constant array behind `v` when it is a weight, else None."""
        return self.graph.weights[v.name] if v.is_weight else None


Pattern = Callable[[Op, Rewriter], "Value | list[Value] | None"]


def apply_patterns(graph: Graph, patterns: dict[str, Pattern]) -> int:
    """One forward sweep: each op whose kind has a pattern is offered to it once; returns rewrites.

    A pattern returns the values replacing the op's results (the op is then erased), or None to
    leave it alone (it must not have inserted anything then). New ops are not revisited.
    """
    count = 0
    for op in list(graph.ops):
        fn = patterns.get(op.kind)
        if fn is None:
            continue
        repl = fn(op, Rewriter(graph, op))
        if repl is None:
            continue
        repl = [repl] if isinstance(repl, Value) else list(repl)
        for old, new in zip(op.results, repl):
            replace_all_uses(graph, old, new)
        erase(graph, op)
        count += 1
    return count


def with_attrs(attrs: Any, **changes) -> Any:
    """A copy of a frozen attribute dataclass with some fields changed."""
    return dataclasses.replace(attrs, **changes)
