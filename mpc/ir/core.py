"""The IR core: `Value`, `Op` and `Graph` with its read-only weight table.

A graph holds named inputs, outputs and a list of ops in topological order. Values are SSA:
each is defined once, by a graph input, an op result, or a weight (`@name`) of the table.
The graph is data; printing, parsing, verifying and running it live in other modules.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from mpc.errors import UNKNOWN, Location, VerifyError
from mpc.ir.types import DType, TensorType, check_array

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.]*$")


def sanitize(name: str) -> str:
    """A name valid in the text form: other characters become '_'."""
    s = re.sub(r"[^A-Za-z0-9_.]", "_", name)
    return s if s and s[0] != "." else "_" + s


class Value:
    """An SSA value: a graph input, an op result, or a weight of the table."""

    __slots__ = ("is_weight", "name", "producer", "type")

    def __init__(self, name: str, type: TensorType, producer: Op | None = None, is_weight: bool = False):
        self.name, self.type, self.producer, self.is_weight = name, type, producer, is_weight

    def __repr__(self) -> str:
        return f"{'@' if self.is_weight else '%'}{self.name}: {self.type}"


class Op:
    """One operation: kind (e.g. `nn.matmul`), operands, results, typed attributes, location."""

    __slots__ = ("attrs", "kind", "loc", "operands", "results")

    def __init__(self, kind: str, operands: list[Value], results: list[Value], attrs: Any, loc: Location = UNKNOWN):
        self.kind, self.operands, self.results, self.attrs, self.loc = kind, list(operands), list(results), attrs, loc
        for r in self.results:
            r.producer = self

    @property
    def result(self) -> Value:
        """The single result (most ops have one)."""
        assert len(self.results) == 1, f"{self.kind} has {len(self.results)} results"
        return self.results[0]

    @property
    def opdef(self):
        """The declaration of this op's kind."""
        from mpc.ir.opdefs import lookup
        return lookup(self.kind)

    def __repr__(self) -> str:
        return f"<{self.kind} {[v.name for v in self.results]} @ {self.loc}>"


class Graph:
    """Named inputs, outputs, ops in topological order, and the weight table."""

    def __init__(self, name: str, inputs: list[Value] | None = None, outputs: list[Value] | None = None):
        self.name = name
        self.inputs: list[Value] = list(inputs or [])
        self.outputs: list[Value] = list(outputs or [])
        self.ops: list[Op] = []
        self._weights: dict[str, np.ndarray] = {}
        self._weight_values: dict[str, Value] = {}
        self._weight_dtypes: dict[str, DType] = {}  # from add_weight(dtype=...)
        self._counter = 0

    # -- weights ---------------------------------------------------------------------------
    @property
    def weights(self) -> dict[str, np.ndarray]:
        """The weight table (name -> read-only array); do not mutate the dict directly."""
        return self._weights

    def add_weight(self, name: str, array: np.ndarray, exact: bool = False, dtype: DType | None = None) -> Value:
        """Add a read-only weight, renaming (`name.1`, ...) unless `exact`; returns its value.

        `dtype` declares an element type the container alone does not say (`i4`, `fx<8,6>` in int8);
        the array must fit it (VerifyError otherwise).
        """
        base, k = name, 0
        while name in self._weights:
            if exact:
                raise VerifyError(UNKNOWN, f"weight @{name} already defined")
            k += 1
            name = f"{base}.{k}"
        arr = np.array(array, copy=True)
        if dtype is not None:
            problem = check_array(TensorType(dtype, arr.shape), arr)
            if problem:
                raise VerifyError(UNKNOWN, f"weight @{name} {problem}")
            self._weight_dtypes[name] = dtype
        arr.flags.writeable = False
        self._weights[name] = arr
        return self.weight(name)

    def weight(self, name: str) -> Value:
        """The value that refers to weight `name`."""
        v = self._weight_values.get(name)
        if v is None:
            if name not in self._weights:
                raise VerifyError(UNKNOWN, f"unknown weight @{name}")
            t = TensorType.of(self._weights[name], self._weight_dtypes.get(name))
            v = Value(name, t, is_weight=True)
            self._weight_values[name] = v
        return v

    def remove_weight(self, name: str) -> None:
        """Drop a weight from the table (dead-code elimination does this)."""
        self._weights.pop(name, None)
        self._weight_values.pop(name, None)
        self._weight_dtypes.pop(name, None)

    # -- values and ops -------------------------------------------------------------------
    def fresh_name(self, hint: str = "t") -> str:
        """A value name unused so far in this graph."""
        taken = self.value_names()
        while True:
            self._counter += 1
            name = f"{hint}{self._counter}"
            if name not in taken:
                return name

    def value_names(self) -> set[str]:
        """Names of all non-weight values (inputs and op results)."""
        names = {v.name for v in self.inputs}
        names.update(r.name for op in self.ops for r in op.results)
        return names

    def values(self) -> Iterable[Value]:
        """Inputs, then op results in order."""
        yield from self.inputs
        for op in self.ops:
            yield from op.results

    def users(self) -> dict[int, list[Op]]:
        """Map id(value) -> ops using it, in op order."""
        uses: dict[int, list[Op]] = {}
        for op in self.ops:
            for v in op.operands:
                uses.setdefault(id(v), []).append(op)
        return uses

    def used_weights(self) -> list[str]:
        """Weight names in order of first use."""
        seen: dict[str, None] = {}
        for op in self.ops:
            for v in op.operands:
                if v.is_weight:
                    seen.setdefault(v.name)
        for v in self.outputs:
            if v.is_weight:
                seen.setdefault(v.name)
        return list(seen)

    def to_networkx(self):
        """A networkx DiGraph view (nodes: op index; edges: value flow) for analyses."""
        import networkx as nx
        g = nx.DiGraph()
        producer = {}
        for i, op in enumerate(self.ops):
            g.add_node(i, kind=op.kind)
            for r in op.results:
                producer[id(r)] = i
        for i, op in enumerate(self.ops):
            for v in op.operands:
                if id(v) in producer:
                    g.add_edge(producer[id(v)], i, value=v.name)
        return g


def clone(graph: Graph) -> Graph:
    """A structural copy sharing the (read-only) weight arrays; locations are kept."""
    new = Graph(graph.name)
    vmap: dict[int, Value] = {}
    for v in graph.inputs:
        vmap[id(v)] = Value(v.name, v.type)
        new.inputs.append(vmap[id(v)])
    new._weights = dict(graph._weights)
    new._weight_dtypes = dict(graph._weight_dtypes)
    new._counter = graph._counter

    def get(v: Value) -> Value:
        return new.weight(v.name) if v.is_weight else vmap[id(v)]

    for op in graph.ops:
        results = [Value(r.name, r.type) for r in op.results]
        for r, nr in zip(op.results, results):
            vmap[id(r)] = nr
        new.ops.append(Op(op.kind, [get(v) for v in op.operands], results, op.attrs, op.loc))
    new.outputs = [get(v) for v in graph.outputs]
    return new
