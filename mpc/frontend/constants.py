"""Op inputs that mpc needs at import time (shapes, axes, bounds, ratios, pads), for the ONNX op handlers.

`constant(cx, node, i, what, why)` returns such an input as a NumPy array when it is constant after
folding: an initializer or Constant, a tensor the importer folded (integer shape computations), or
a value that ops already emitted compute from weights alone (those ops are evaluated here through
the interpreter's `apply`, the same kernels as at run time; dead-code elimination drops them
later). An input computed from a graph input gets one line (`NeedsConstant`) naming it, the graph
inputs it depends on, and why the op needs it at import.
"""
from __future__ import annotations

import numpy as np

from mpc.errors import Location, NeedsConstant
from mpc.ir import Value, apply

WHY = "mpc fixes it at import (attributes and shapes are static in the IR)"


def constant(cx, node, i: int, what: str, why: str = WHY) -> np.ndarray:
    """Input `i` of `node` as an array, folded when it is computed from constants; NeedsConstant
    (naming the input and the graph inputs it depends on) when it is not."""
    k = cx.known(node, i)
    if k is not None:
        if k.symbolic:
            raise node.reject(f"{what} (input '{node.inputs[i]}') depends on a dynamic dim")
        return np.asarray(k.array)
    value = cx.env[node.inputs[i]]
    sources = graph_sources(value)
    if sources:
        raise NeedsConstant(node.op_type, Location(node=node.name), what, node.inputs[i], sources, why)
    return evaluate(cx.graph.weights, value)


def graph_sources(value: Value) -> tuple[str, ...]:
    """The graph inputs `value` is computed from (sorted names; empty when only from weights)."""
    found, stack, seen = set(), [value], set()
    while stack:
        v = stack.pop()
        if id(v) in seen or v.is_weight:
            continue
        seen.add(id(v))
        if v.producer is None:
            found.add(v.name)
        else:
            stack.extend(v.producer.operands)
    return tuple(sorted(found))


def evaluate(weights, value: Value) -> np.ndarray:
    """The array of a value computed from weights only, by running its producing ops in order."""
    memo: dict[int, np.ndarray] = {}

    def get(v: Value) -> np.ndarray:
        if v.is_weight:
            return weights[v.name]
        if id(v) not in memo:
            op = v.producer
            for r, a in zip(op.results, apply(op, [get(x) for x in op.operands])):
                memo[id(r)] = a
        return memo[id(v)]
    return np.asarray(get(value))
