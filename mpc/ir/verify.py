"""The verifier: SSA, arity, attribute types and shapes (through each op's infer_type).

It runs after parsing and after every pass; the pass manager names the pass that broke the IR.
"""
from __future__ import annotations

import dataclasses
import math
import typing

from mpc.errors import UNKNOWN, VerifyError
from mpc.ir.core import Graph, Op, Value
from mpc.ir.opdefs import InferError, coerce, lookup
from mpc.ir.types import check_array


def _same(a, b) -> bool:
    """Equality that holds for nan == nan (also inside tuples) and tells bool from int."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _check_attrs(op: Op, opdef) -> None:
    if not isinstance(op.attrs, opdef.attrs):
        raise VerifyError(op.loc, f"'{op.kind}' attributes must be {opdef.attrs.__name__}, "
                                  f"got {type(op.attrs).__name__}")
    hints = typing.get_type_hints(opdef.attrs)
    for f in dataclasses.fields(opdef.attrs):
        value = getattr(op.attrs, f.name)
        try:
            if not _same(coerce(hints[f.name], value, f"{op.kind}.{f.name}"), value):
                raise InferError(f"{op.kind}.{f.name}: {value!r} is not of type {hints[f.name]}")
        except InferError as e:
            raise VerifyError(op.loc, str(e)) from None


def _check_operands(graph: Graph, op: Op, defined: set[int]) -> None:
    lo, hi = op.opdef.arity()
    n = len(op.operands)
    if n < lo or (hi is not None and n > hi):
        want = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi is not None else f"at least {lo}"
        raise VerifyError(op.loc, f"'{op.kind}' takes {want} operands ({', '.join(op.opdef.operands)}), got {n}")
    for v in op.operands:
        if v.is_weight:
            _check_weight(graph, v, op)
        elif id(v) not in defined:
            raise VerifyError(op.loc, f"'{op.kind}' uses %{v.name} before it is defined")


def _check_weight(graph: Graph, v: Value, op: Op | None) -> None:
    loc = op.loc if op else UNKNOWN
    if v.name not in graph.weights:
        raise VerifyError(loc, f"weight @{v.name} is not in the weight table")
    declared = graph.weight(v.name).type
    if v.type != declared:
        raise VerifyError(loc, f"weight @{v.name} used as {v.type} but declared {declared}")
    problem = check_array(declared, graph.weights[v.name])
    if problem:
        raise VerifyError(loc, f"weight @{v.name} {problem}")


def _check_types(graph: Graph, op: Op) -> None:
    try:
        inferred = op.opdef.infer([v.type for v in op.operands], op.attrs)
        if op.opdef.verify is not None:
            op.opdef.verify(op, graph)
    except InferError as e:
        raise VerifyError(op.loc, f"'{op.kind}': {e}") from None
    declared = [r.type for r in op.results]
    if list(inferred) != declared:
        raise VerifyError(op.loc, f"'{op.kind}' result type {', '.join(map(str, declared))} does not match "
                                  f"inferred {', '.join(map(str, inferred))}")


def verify_op(graph: Graph, op: Op, defined: set[int]) -> None:
    """Check one op against its declaration; `defined` holds ids of values defined before it."""
    try:
        opdef = lookup(op.kind)
    except KeyError:
        raise VerifyError(op.loc, f"unknown op kind '{op.kind}'") from None
    _check_operands(graph, op, defined)
    _check_attrs(op, opdef)
    if len(op.results) != opdef.results:
        raise VerifyError(op.loc, f"'{op.kind}' has {opdef.results} results, got {len(op.results)}")
    _check_types(graph, op)


def verify_graph(graph: Graph) -> None:
    """Raise VerifyError at the first broken invariant of `graph`."""
    defined: set[int] = set()
    names: set[str] = set()
    for v in graph.inputs:
        if v.is_weight or v.name in names:
            raise VerifyError(UNKNOWN, f"graph input %{v.name} is a weight or defined twice")
        if any(isinstance(d, int) and d < 0 for d in v.type.shape):
            raise VerifyError(UNKNOWN, f"graph input %{v.name} has a negative dim: {v.type}")
        names.add(v.name)
        defined.add(id(v))
    for op in graph.ops:
        verify_op(graph, op, defined)
        for r in op.results:
            if r.name in names or id(r) in defined:
                raise VerifyError(op.loc, f"value %{r.name} defined twice")
            if r.producer is not op:
                raise VerifyError(op.loc, f"value %{r.name} does not point back to its op")
            names.add(r.name)
            defined.add(id(r))
    seen = set()
    for v in graph.outputs:
        if v.is_weight:
            _check_weight(graph, v, None)
        elif id(v) not in defined:
            raise VerifyError(UNKNOWN, f"graph output %{v.name} is never defined")
        if v.name in seen:
            raise VerifyError(UNKNOWN, f"graph output %{v.name} listed twice")
        seen.add(v.name)
