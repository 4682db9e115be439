"""Parser for the textual IR (grammar in grammar.lark), with file:line:col diagnostics.

`parse(text, weights)` rebuilds the graph that `print_graph` printed; weights come from the
`weights.npz` beside a `.mpc` file (or a callable that makes one from a declared type, which the
snippet tests use to draw seeded random weights). The result is verified before it is returned.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from importlib import resources

import lark
import numpy as np

from mpc.errors import Location, ParseError
from mpc.ir.core import Graph, Op, Value
from mpc.ir.opdefs import InferError, known_kinds, lookup
from mpc.ir.types import DType, TensorType, TypeSyntaxError, check_array

WeightSource = Mapping[str, np.ndarray] | Callable[[str, TensorType], np.ndarray] | None

_READABLE = {"LOCAL": "%value", "GLOBAL": "@name", "OPNAME": "op kind", "IDENT": "identifier",
             "INT": "integer", "FLOAT": "float", "STRING": "string", "LPAR": "'('", "RPAR": "')'",
             "LBRACE": "'{'", "RBRACE": "'}'", "LSQB": "'['", "RSQB": "']'", "COMMA": "','",
             "COLON": "':'", "EQUAL": "'='", "__ANON_0": "'->'", "MINUS": "'-'", "MORETHAN": "'>'",
             "LESSTHAN": "'<'", "GRAPH": "'graph'", "WEIGHT": "'weight'", "$END": "end of input"}


@functools.lru_cache(maxsize=1)
def _lark() -> lark.Lark:
    text = resources.files("mpc.ir").joinpath("grammar.lark").read_text()
    return lark.Lark(text, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def _expected(names) -> str:
    words = sorted({_READABLE.get(n, n.lower()) for n in names})
    return " or ".join(words[:6]) + (" or ..." if len(words) > 6 else "")


def _syntax_error(e: lark.exceptions.UnexpectedInput, filename: str) -> ParseError:
    loc = Location(filename, getattr(e, "line", None) or 1, getattr(e, "column", None) or 1)
    if isinstance(e, lark.exceptions.UnexpectedToken):
        got = "end of input" if e.token.type == "$END" else repr(str(e.token))
        return ParseError(loc, f"expected {_expected(e.expected)}, got {got}")
    if isinstance(e, lark.exceptions.UnexpectedCharacters):
        return ParseError(loc, f"unexpected character {e.char!r}"
                          + (f" (expected {_expected(e.allowed)})" if e.allowed else ""))
    return ParseError(loc, "unexpected end of input")


class _Builder:
    """Walks the parse tree and builds the graph, resolving names as it goes."""

    def __init__(self, filename: str, weights: WeightSource):
        self.filename, self.weights = filename, weights
        self.graph: Graph | None = None
        self.scope: dict[str, Value] = {}

    def loc(self, item) -> Location:
        meta = getattr(item, "meta", None)
        line = getattr(item, "line", None) or (meta.line if meta and not meta.empty else 1)
        col = getattr(item, "column", None) or (meta.column if meta and not meta.empty else 1)
        return Location(self.filename, line, col)

    def fail(self, item, message: str) -> ParseError:
        return ParseError(self.loc(item), message)

    def type(self, tree) -> TensorType:
        dtype_tok, params, *dims = tree.children
        dtype = self.dtype(dtype_tok, params)
        shape = []
        for d in dims:
            if d is None:
                continue
            tok = d.children[0]
            if d.data == "int_dim" and int(tok) < 0:
                raise self.fail(tok, f"negative dim {tok}")
            shape.append(int(tok) if d.data == "int_dim" else str(tok))
        return TensorType(dtype, tuple(shape))

    def dtype(self, name_tok, params) -> DType:
        toks = [name_tok] + [t for t in (params.children if params is not None else []) if t is not None]
        if params is not None and len(toks) == 1:
            raise self.fail(params, f"empty parameter list after '{name_tok}'")
        try:
            return DType.make(str(name_tok), tuple(int(t) for t in toks[1:]))
        except TypeSyntaxError as e:
            raise self.fail(toks[min(e.index, len(toks) - 1)], str(e)) from None

    def literal(self, tree):
        if tree.data == "list_lit":
            return [self.literal(c) for c in tree.children if c is not None]
        tok = tree.children[0]
        if tree.data == "int_lit":
            return int(tok)
        if tree.data == "float_lit":
            return float(tok)
        if tree.data == "str_lit":
            return json.loads(str(tok))
        return {"true": True, "false": False}.get(str(tok), str(tok))

    def build(self, tree) -> Graph:
        name_tok, ins, outs, *stmts = tree.children
        self.graph = Graph(str(name_tok)[1:])
        for p in ins.children:
            if p is not None:
                tok, ty = p.children
                self.graph.inputs.append(self.define(tok, self.type(ty), None))
        for s in stmts:
            self.weight_decl(s) if s.data == "weight_decl" else self.op_stmt(s)
        for p in outs.children:
            if p is not None:
                tok, ty = p.children
                self.graph.outputs.append(self.output(tok, self.type(ty)))
        return self.graph

    def define(self, tok, ty: TensorType, producer):
        name = str(tok)[1:]
        if name in self.scope:
            raise self.fail(tok, f"value %{name} defined twice")
        self.scope[name] = Value(name, ty, producer)
        return self.scope[name]

    def weight_decl(self, tree):
        tok, ty_tree = tree.children
        name, ty = str(tok)[1:], self.type(ty_tree)
        if name in self.graph.weights:
            raise self.fail(tok, f"weight @{name} declared twice")
        if callable(self.weights):
            array = np.asarray(self.weights(name, ty))
        elif self.weights is not None and name in self.weights:
            array = np.asarray(self.weights[name])
        else:
            raise self.fail(tok, f"weight @{name} not found in the weight table")
        problem = check_array(ty, array)
        if problem:
            raise self.fail(tok, f"weight @{name} {problem}")
        self.graph.add_weight(name, array, exact=True, dtype=ty.dtype)

    def operand(self, tok) -> Value:
        name = str(tok)[1:]
        if tok.type == "GLOBAL":
            if name not in self.graph.weights:
                raise self.fail(tok, f"use of undeclared weight @{name}")
            return self.graph.weight(name)
        if name not in self.scope:
            raise self.fail(tok, f"use of undefined value %{name}")
        return self.scope[name]

    def output(self, tok, ty: TensorType) -> Value:
        v = self.operand(tok)
        if v.type != ty:
            raise self.fail(tok, f"output {tok} is declared {ty} but defined as {v.type}")
        return v

    def op_stmt(self, tree):
        res_tree, kind_tok, operands_tree, attr_tree, types_tree = tree.children
        kind = str(kind_tok)
        try:
            opdef = lookup(kind)
        except KeyError:
            raise self.fail(kind_tok, f"unknown op kind '{kind}' (expected one of: "
                                      f"{', '.join(known_kinds())})") from None
        attrs = self.attrs(opdef, attr_tree, kind_tok)
        operands = [self.operand(t) for t in operands_tree.children if t is not None]
        types = [self.type(t) for t in types_tree.children]
        res_toks = list(res_tree.children)
        if len(types) != len(res_toks):
            raise self.fail(kind_tok, f"{len(res_toks)} results but {len(types)} types")
        op = Op(kind, operands, [], attrs, self.loc(res_toks[0]))
        op.results = [self.define(t, ty, op) for t, ty in zip(res_toks, types)]
        self.graph.ops.append(op)

    def attrs(self, opdef, tree, kind_tok):
        values, toks = {}, {}
        for a in (tree.children if tree is not None else []):
            if a is None:
                continue
            key, lit = a.children
            if str(key) in values:
                raise self.fail(key, f"attribute '{key}' given twice")
            values[str(key)], toks[str(key)] = self.literal(lit), key
        try:
            return opdef.make_attrs(values)
        except InferError as e:
            where = next((toks[k] for k in toks if f".{k}:" in str(e) or f"'{k}'" in str(e)), kind_tok)
            raise self.fail(where, str(e)) from None


def parse(text: str, weights: WeightSource = None, filename: str = "<text>", verify: bool = True) -> Graph:
    """Parse IR text into a verified graph; raises ParseError (file:line:col) or VerifyError."""
    try:
        tree = _lark().parse(text)
    except lark.exceptions.UnexpectedInput as e:
        raise _syntax_error(e, filename) from None
    graph_tree = tree.children[0]
    graph = _Builder(filename, weights).build(graph_tree)
    if verify:
        from mpc.ir.verify import verify_graph
        verify_graph(graph)
    return graph

