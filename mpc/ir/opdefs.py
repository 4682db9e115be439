"""Op declarations: each op kind is declared once, with operand roles, a typed attribute
dataclass, type inference, an optional extra verifier, its traits and its reference NumPy kernel.

Printing, parsing, verification, the interpreter and `mpc ops` all derive from this one
declaration. Families (`nn`, `mp`, ...) live in one module each and register at import.

A kernel is `kernel(k, *arrays) -> array | tuple of arrays`, where `k` is a `KernelContext`: the
op's attributes (`k.attrs`), its operand and result types (`k.in_types`, `k.out_types`: what a
fixed-point kernel needs to know besides the stored integers) and `k.rng`, a NumPy Generator seeded
from the op's `seed` attribute when it has one (stochastic ops), else from `DEFAULT_SEED`, so every
run is deterministic. Only `mpc.ir.interp.apply` calls kernels.

Traits say what passes may assume about an op kind (`TRAITS`):
- `pure`: the results are a function of the operands and attributes only (no state, no RNG);
- `foldable`: `fold-constants` may evaluate it when all operands are weights (implies `pure`);
- `stateful`: the kernel keeps state along the leading time axis (excludes `pure`).

Op kinds live in a `Registry`. The default one is filled at import and never changed afterwards;
`fresh_registry()` makes a copy current for a `with` block, so tests can declare op kinds without
touching it.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import enum
import functools
import math
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from mpc.ir.types import DType, TensorType, TypeSyntaxError

TRAITS = ("pure", "foldable", "stateful")
DEFAULT_SEED = 0


class InferError(ValueError):
    """Raised by infer/verify functions; the verifier attaches the op's location."""


@dataclass(frozen=True)
class NoAttrs:
    """Attributes of an op kind that has none."""


@dataclass(frozen=True)
class OpDef:
    """The one declaration of an op kind.

    operands: role names; a trailing '?' marks an optional operand, a trailing '*' a variadic
    tail (one or more). infer(types, attrs) -> result types; kernel(k, *arrays) -> array or tuple
    of arrays, k a KernelContext; verify(op, graph) may raise InferError for checks that types alone
    cannot express; traits: a subset of TRAITS.
    """

    kind: str
    operands: tuple[str, ...]
    summary: str
    infer: Callable[[list[TensorType], Any], list[TensorType]]
    kernel: Callable[..., Any]
    attrs: type = NoAttrs
    results: int = 1
    verify: Callable[[Any, Any], None] | None = None
    traits: frozenset[str] = frozenset()

    @property
    def family(self) -> str:
        """The family prefix, e.g. 'nn'."""
        return self.kind.split(".", 1)[0]

    def arity(self) -> tuple[int, int | None]:
        """(min, max) operand count; max None when variadic."""
        required = sum(1 for r in self.operands if not r.endswith(("?", "*")))
        if any(r.endswith("*") for r in self.operands):
            return required + 1, None
        return required, len(self.operands)

    def attr_fields(self) -> list[dataclasses.Field]:
        """Attribute fields in declaration order."""
        return list(dataclasses.fields(self.attrs))

    def make_attrs(self, values: dict[str, Any]) -> Any:
        """Build the attribute dataclass from loose values, coercing and checking types."""
        hints = typing.get_type_hints(self.attrs)
        names = [f.name for f in self.attr_fields()]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise InferError(f"op '{self.kind}' has no attribute '{unknown[0]}' (expected one of: "
                             f"{', '.join(names) or 'none'})")
        missing = [f.name for f in self.attr_fields()
                   if f.name not in values and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise InferError(f"op '{self.kind}' requires attribute '{missing[0]}'")
        coerced = {k: coerce(hints[k], v, f"{self.kind}.{k}") for k, v in values.items()}
        try:
            return self.attrs(**coerced)
        except TypeError as e:
            raise InferError(f"op '{self.kind}': {e}") from None


def coerce(tp, value, where: str):
    """Coerce a parsed literal to the declared attribute type, or raise InferError."""
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return value if isinstance(value, tp) else tp(value)
        except ValueError:
            raise InferError(f"{where}: expected one of {[m.value for m in tp]}, got {value!r}") from None
    if tp is DType:
        return _coerce_dtype(value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise InferError(f"{where}: expected a bool, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise InferError(f"{where}: expected an int, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise InferError(f"{where}: expected a float, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise InferError(f"{where}: expected a string, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise InferError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        elem = args[0]
        if (len(args) != 2 or args[1] is not Ellipsis) and len(args) != len(value):
            raise InferError(f"{where}: expected {len(args)} elements, got {len(value)}")
        return tuple(coerce(elem, v, where) for v in value)
    raise InferError(f"{where}: unsupported attribute type {tp}")


def _coerce_dtype(value, where: str) -> DType:
    if isinstance(value, DType):
        return value
    if not isinstance(value, str):
        raise InferError(f"{where}: expected an element type, got {value!r}")
    try:
        return DType.parse(value)
    except TypeSyntaxError as e:
        raise InferError(f"{where}: {e}") from None


class KernelContext:
    """What a kernel sees besides its arrays: attributes, operand and result types, a seeded RNG, and
    an optional operation tally (None on the normal path; kernels that count check it once)."""

    def __init__(self, attrs: Any, in_types: tuple[TensorType, ...], out_types: tuple[TensorType, ...],
                 tally: Any = None):
        self.attrs, self.in_types, self.out_types, self.tally = attrs, in_types, out_types, tally

    @functools.cached_property
    def rng(self) -> np.random.Generator:
        """A Generator seeded from the `seed` attribute, or DEFAULT_SEED (made on first use: most kernels need none)."""
        return np.random.default_rng(getattr(self.attrs, "seed", DEFAULT_SEED))


def check_traits(kind: str, traits: frozenset[str]) -> None:
    """RuntimeError when traits are unknown or contradict each other (a declaration bug)."""
    unknown = sorted(traits - set(TRAITS))
    if unknown:
        raise RuntimeError(f"op kind '{kind}': unknown trait '{unknown[0]}' (expected one of: {', '.join(TRAITS)})")
    if "foldable" in traits and "pure" not in traits:
        raise RuntimeError(f"op kind '{kind}': 'foldable' needs 'pure'")
    if "stateful" in traits and "pure" in traits:
        raise RuntimeError(f"op kind '{kind}': 'stateful' contradicts 'pure'")


class Registry:
    """Op kinds by name."""

    def __init__(self, ops: dict[str, OpDef] | None = None):
        self.ops: dict[str, OpDef] = dict(ops or {})

    def register(self, opdef: OpDef) -> OpDef:
        """Add an op kind; RuntimeError when it is declared twice or badly."""
        if opdef.kind in self.ops:
            raise RuntimeError(f"op kind '{opdef.kind}' declared twice")
        if not dataclasses.is_dataclass(opdef.attrs) or not opdef.attrs.__dataclass_params__.frozen:
            raise RuntimeError(f"attributes of '{opdef.kind}' must be a frozen dataclass")
        check_traits(opdef.kind, opdef.traits)
        self.ops[opdef.kind] = opdef
        return opdef


DEFAULT_REGISTRY = Registry()
_current: contextvars.ContextVar[Registry] = contextvars.ContextVar("mpc_op_registry", default=DEFAULT_REGISTRY)


@contextlib.contextmanager
def fresh_registry() -> Iterator[Registry]:
    """Inside the block, a copy of the current registry is the one define, lookup and parse use (for tests)."""
    token = _current.set(Registry(_current.get().ops))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def register(opdef: OpDef) -> OpDef:
    """Add an op kind to the current registry (done once, at import of its family module)."""
    return _current.get().register(opdef)


def define(kind: str, operands: tuple[str, ...], summary: str, infer, kernel, attrs: type = NoAttrs,
           results: int = 1, verify=None, traits: Iterable[str] = ()) -> OpDef:
    """Declare and register an op kind."""
    return register(OpDef(kind, tuple(operands), summary, infer, kernel, attrs, results, verify, frozenset(traits)))


def lookup(kind: str) -> OpDef:
    """The declaration of `kind`; KeyError when unknown."""
    return _current.get().ops[kind]


def known_kinds() -> list[str]:
    """Every registered op kind, sorted."""
    return sorted(_current.get().ops)


def attr_is_default(field: dataclasses.Field, value) -> bool:
    """Whether an attribute value equals its declared default (the printer omits those)."""
    if field.default is dataclasses.MISSING:
        return False
    d = field.default
    if isinstance(d, float) and isinstance(value, float) and math.isnan(d) and math.isnan(value):
        return True
    if isinstance(d, float) and isinstance(value, float) and math.copysign(1, d) != math.copysign(1, value):
        return False
    return type(d) is type(value) and d == value
