"""Error hierarchy and source locations.

Every user-facing error is an `MPCError` subclass with structured fields; the CLI prints
`mpc: error: <message>` on one line and exits with status 2. Anything else that reaches the
CLI is a bug (exit 1).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """Where an op or value came from: a text position, an ONNX node, or both unknown."""

    file: str | None = None
    line: int | None = None
    col: int | None = None
    node: str | None = None

    def __str__(self) -> str:
        if self.line is not None:
            return f"{self.file or '<text>'}:{self.line}:{self.col or 1}"
        if self.node is not None:
            return f"node '{self.node}'"
        return "<unknown>"

    @property
    def known(self) -> bool:
        """True when the location points somewhere."""
        return self.line is not None or self.node is not None


UNKNOWN = Location()


class MPCError(Exception):
    """Base of every user-facing error: its str() is the one-line message."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))

    @property
    def message(self) -> str:
        """The one-line message, without the `mpc: error:` prefix."""
        return str(self)


class ParseError(MPCError):
    """Malformed IR text; carries file, line and column."""

    def __init__(self, loc: Location, message: str):
        self.loc = loc
        super().__init__(f"{loc}: {message}")


class VerifyError(MPCError):
    """The IR breaks an invariant (SSA, arity, attribute types, shapes)."""

    def __init__(self, loc: Location, message: str, pass_name: str | None = None):
        self.loc, self.detail, self.pass_name = loc, message, pass_name
        where = f"{loc}: " if loc.known else ""
        after = f"IR invalid after pass '{pass_name}': " if pass_name else ""
        super().__init__(f"{after}{where}{message}")


class UnsupportedOp(MPCError):
    """An ONNX node (or IR op) that mpc cannot handle, named with its type and location."""

    def __init__(self, op_type: str, loc: Location, reason: str = "", attribute: str | None = None,
                 value: object = None):
        self.op_type, self.loc, self.attribute, self.value = op_type, loc, attribute, value
        what = f"unsupported op '{op_type}'"
        if attribute is not None:
            what = f"unsupported attribute {attribute}={value!r} on op '{op_type}'"
        if loc.known:
            what += f" at {loc}"
        super().__init__(f"{what}: {reason}" if reason else what)


class BadModel(MPCError):
    """A model file that cannot be read: missing, truncated, invalid."""

    def __init__(self, path: str, reason: str):
        self.path = path
        super().__init__(f"{path}: {reason}")


class BadInput(MPCError):
    """Data that does not fit the model: missing input, wrong shape or dtype, bad file."""


class BadFlag(MPCError):
    """A command-line flag or value that is not valid."""


class OutputExists(MPCError):
    """The output path exists and --force was not given."""

    def __init__(self, path: str):
        self.path = path
        super().__init__(f"output '{path}' already exists (use --force to overwrite)")


class KernelError(MPCError):
    """A kernel refused its data (NaN/inf, out of range), named with the op that ran it."""


class NeedsConstant(UnsupportedOp):
    """An op input that mpc must know at import (a shape, axes, a bound) but that is computed at run
    time from graph inputs: names the input, the graph inputs it comes from and why it must be constant."""

    def __init__(self, op_type: str, loc: Location, what: str, input_name: str, sources: tuple[str, ...],
                 why: str):
        self.what, self.input_name, self.sources, self.why = what, input_name, sources, why
        origin = "it is a graph input, known only at run time" if sources == (input_name,) else \
            "it is computed at run time from graph input " + ", ".join(f"'{s}'" for s in sources)
        super().__init__(op_type, loc, f"{what} (input '{input_name}') must be a constant, but {origin}: {why}")
