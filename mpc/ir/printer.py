"""The printer: a graph as stable, readable text that `parse` reads back.

Inputs and outputs keep their names; other values are numbered %0, %1, ... in definition
order; weights appear as `@name`, declared once at the top with their types, never inlined.
Attributes are printed in declaration order, those at their default value omitted.
"""
from __future__ import annotations

import enum
import json
import math
import re

from mpc.ir.core import Graph, Value
from mpc.ir.opdefs import attr_is_default
from mpc.ir.types import DType

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def format_literal(v) -> str:
    """An attribute value as text."""
    if isinstance(v, enum.Enum):
        v = v.value
    if isinstance(v, DType):  # `f32` prints as an identifier, `fx<8,6>` as a string
        v = str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return v if _IDENT.match(v) and v not in ("true", "false", "inf", "nan") else json.dumps(v)
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(format_literal(x) for x in v) + "]"
    raise TypeError(f"cannot print attribute value {v!r}")


def format_attrs(op) -> str:
    """` {a = 1, b = [2, 3]}` for non-default attributes, or ''."""
    parts = []
    for f in op.opdef.attr_fields():
        value = getattr(op.attrs, f.name)
        if not attr_is_default(f, value):
            parts.append(f"{f.name} = {format_literal(value)}")
    return " {" + ", ".join(parts) + "}" if parts else ""


def value_names(graph: Graph) -> dict[int, str]:
    """Printed name of every non-weight value: inputs/outputs keep theirs, the rest are numbered."""
    names = {id(v): v.name for v in graph.inputs}
    names.update((id(v), v.name) for v in graph.outputs if not v.is_weight)
    taken = set(names.values())
    n = 0
    for op in graph.ops:
        for r in op.results:
            if id(r) in names:
                continue
            while str(n) in taken:
                n += 1
            names[id(r)] = str(n)
            n += 1
    return names


def print_graph(graph: Graph) -> str:
    """The text form of `graph` (ends with a newline)."""
    names = value_names(graph)

    def ref(v: Value) -> str:
        return f"@{v.name}" if v.is_weight else f"%{names[id(v)]}"

    ins = ", ".join(f"%{v.name}: {v.type}" for v in graph.inputs)
    outs = ", ".join(f"{ref(v)}: {v.type}" for v in graph.outputs)
    lines = [f"graph @{graph.name}({ins}) -> ({outs}) {{"]
    for w in graph.used_weights():
        lines.append(f"  weight @{w} : {graph.weight(w).type}")
    for op in graph.ops:
        res = ", ".join(ref(r) for r in op.results)
        args = ", ".join(ref(v) for v in op.operands)
        types = ", ".join(str(r.type) for r in op.results)
        lines.append(f"  {res} = {op.kind}({args}){format_attrs(op)} : {types}")
    lines.append("}")
    return "\n".join(lines) + "\n"
