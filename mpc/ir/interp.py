"""The interpreter: runs a graph op by op through each kind's reference NumPy kernel.

It is the reference semantics of the IR (used by snippet tests and `mpc verify`); kernels come
from the op declarations, values are freed after their last use unless asked to keep them.

`apply(op, arrays)` runs one op and is the only caller of kernels: the interpreter, constant
folding and calibration (`mpc.calib`) all go through it, so every kernel sees the same context
(`KernelContext`: attributes, operand and result types, seeded RNG), floating-point warnings are
silenced the same way (NaN and infinity are values, checked where they matter), and a kernel's
ValueError becomes a `KernelError` naming the op kind and its location.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from mpc.errors import BadInput, KernelError
from mpc.ir.core import Graph, Op
from mpc.ir.opdefs import KernelContext
from mpc.ir.types import out_of_range


def check_feeds(graph: Graph, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Match feeds to graph inputs by name (casting floats to the input dtype); BadInput if off."""
    bindings: dict[str, int] = {}
    out = {}
    for v in graph.inputs:
        if v.name not in feeds:
            raise BadInput(f"missing data for input '{v.name}' (expected shape {v.type})")
        a = np.asarray(feeds[v.name])
        if a.dtype.kind == "f" and a.dtype != v.type.dtype.numpy:
            a = a.astype(v.type.dtype.numpy)
        if not v.type.matches(a, bindings):
            raise BadInput(f"input '{v.name}': expected {v.type}, got {a.dtype.name}{list(a.shape)}"
                           + (f" with {bindings}" if bindings else ""))
        bad = out_of_range(v.type.dtype, a)
        if bad:
            raise BadInput(f"input '{v.name}' of type {v.type} {bad}")
        out[v.name] = a
    return out


def _last_uses(graph: Graph) -> dict[int, int]:
    last = {}
    for i, op in enumerate(graph.ops):
        for v in op.operands:
            last[id(v)] = i
    return last


def apply(op: Op, arrays: Sequence[np.ndarray], kernel: Callable | None = None,
          tally: Any = None) -> tuple[np.ndarray, ...]:
    """Run `op`'s kernel (or `kernel`, same signature) on its operand arrays; its results as a tuple.
    `tally` reaches the kernel as `k.tally` (kernels that count operations add to it)."""
    k = KernelContext(op.attrs, tuple(v.type for v in op.operands), tuple(r.type for r in op.results), tally)
    try:
        with np.errstate(all="ignore"):
            out = (kernel or op.opdef.kernel)(k, *arrays)
    except ValueError as e:
        raise KernelError(f"op '{op.kind}' at {op.loc}: {e}") from None
    return out if isinstance(out, tuple) else (out,)


def run(graph: Graph, feeds: Mapping[str, np.ndarray], keep_all: bool = False,
        kernels: Mapping | None = None, tallies: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Run `graph`; returns outputs by name, or every value by name when `keep_all`.

    `kernels` overrides the declared kernel of some op kinds (kind -> fn(k, *arrays)); `tallies` maps
    an op's first result name to the tally its kernel counts operations into (see mpc.fx.count).
    """
    env: dict[int, np.ndarray] = {}
    checked = check_feeds(graph, feeds)
    for v in graph.inputs:
        env[id(v)] = checked[v.name]
    keep = {id(v) for v in graph.outputs}
    last = _last_uses(graph)
    kept: dict[str, np.ndarray] = {}
    for i, op in enumerate(graph.ops):
        args = [graph.weights[v.name] if v.is_weight else env[id(v)] for v in op.operands]
        tally = tallies.get(op.results[0].name) if tallies is not None else None
        for r, a in zip(op.results, apply(op, args, (kernels or {}).get(op.kind), tally)):
            env[id(r)] = a
            if keep_all:
                kept[r.name] = a
        for v in op.operands:
            if last.get(id(v)) == i and id(v) not in keep and not keep_all:
                env.pop(id(v), None)
    result = {v.name: (graph.weights[v.name] if v.is_weight else env[id(v)]) for v in graph.outputs}
    return {**kept, **result} if keep_all else result
