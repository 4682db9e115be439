"""Tensor types: a parametric element type and a shape whose dims are ints or symbolic names like `N`.

Element types: `f16|f32|f64`, `i<W>`/`u<W>` (W = 1..64, written `i8`, `u3`), `bool`, and fixed point
`fx<W,F>`/`ufx<W,F>` (W total bits including the sign, F fractional bits; F may be negative or > W).
Each knows its text, its NumPy storage container (the smallest that holds W bits) and its range.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

Dim = int | str

_FLOAT_WIDTHS = (16, 32, 64)
_FIXED = ("fx", "ufx")
_SIMPLE = re.compile(r"^([iuf])(0|[1-9]\d*)$")  # no leading zeros: `i08` would not print back
_PARAMETRIC = re.compile(r"^(u?fx)<\s*([+-]?\d+)\s*,\s*([+-]?\d+)\s*>$")
EXPECTED = "f16, f32, f64, i<W>, u<W>, bool, fx<W,F> or ufx<W,F>"


class TypeSyntaxError(ValueError):
    """A bad element type; `index` says which part was wrong (0: the name, 1..: a parameter)."""

    def __init__(self, message: str, index: int = 0):
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class DType:
    """An element type: kind ('f', 'i', 'u', 'bool', 'fx', 'ufx'), width in bits, fractional bits (fx)."""

    kind: str
    width: int
    frac: int = 0

    def __str__(self) -> str:
        if self.kind == "bool":
            return "bool"
        if self.kind in _FIXED:
            return f"{self.kind}<{self.width},{self.frac}>"
        return f"{self.kind}{self.width}"

    def __repr__(self) -> str:
        return f"DType({self})"

    @property
    def value(self) -> str:
        """The text spelling (kept from the enum this class replaced)."""
        return str(self)

    @property
    def is_float(self) -> bool:
        """f16, f32 or f64."""
        return self.kind == "f"

    @property
    def is_fixed(self) -> bool:
        """fx<W,F> or ufx<W,F>."""
        return self.kind in _FIXED

    @property
    def is_signed(self) -> bool:
        """Whether stored integers are two's complement (i, fx; floats count as signed too)."""
        return self.kind in ("f", "i", "fx")

    @property
    def numpy(self) -> np.dtype:
        """The NumPy storage dtype: the smallest container of at least `width` bits."""
        if self.kind == "bool":
            return np.dtype(bool)
        if self.kind == "f":
            return np.dtype(f"float{self.width}")
        bits = next(b for b in (8, 16, 32, 64) if b >= self.width)
        return np.dtype(f"{'int' if self.is_signed else 'uint'}{bits}")

    @property
    def int_range(self) -> tuple[int, int] | None:
        """(min, max) of the stored integer; None for floats."""
        if self.kind == "f":
            return None
        if self.kind == "bool":
            return 0, 1
        if self.is_signed:
            return -(1 << (self.width - 1)), (1 << (self.width - 1)) - 1
        return 0, (1 << self.width) - 1

    @property
    def resolution(self) -> float | None:
        """The real value of one stored step, 2^-F, for fixed point; None otherwise."""
        return math.ldexp(1.0, -self.frac) if self.is_fixed else None

    @property
    def real_range(self) -> tuple[float, float] | None:
        """(min, max) real value a fixed-point type represents; None otherwise."""
        if not self.is_fixed:
            return None
        lo, hi = self.int_range
        return math.ldexp(lo, -self.frac), math.ldexp(hi, -self.frac)

    @staticmethod
    def make(name: str, params: tuple[int, ...] = ()) -> DType:
        """The type called `name` with `<params>`; TypeSyntaxError saying what was expected."""
        if name in _FIXED:
            if len(params) != 2:
                raise TypeSyntaxError(f"{name} takes 2 parameters <width,frac>, got {len(params)}")
            _check_width(name, params[0], 1)
            return DType(name, params[0], params[1])
        if params:
            raise TypeSyntaxError(f"element type '{name}' takes no parameters")
        if name == "bool":
            return DType("bool", 1)
        m = _SIMPLE.match(name)
        if not m:
            raise TypeSyntaxError(f"unknown element type '{name}' (expected {EXPECTED})")
        kind, width = m.group(1), int(m.group(2))
        if kind == "f" and width not in _FLOAT_WIDTHS:
            raise TypeSyntaxError(f"float width must be 16, 32 or 64, got {width}")
        _check_width(kind, width, 0)
        return DType(kind, width)

    @staticmethod
    def parse(text: str) -> DType:
        """The type spelled `text` (e.g. 'f32', 'u3', 'fx<8,6>'); TypeSyntaxError when malformed."""
        m = _PARAMETRIC.match(text.strip())
        if m:
            return DType.make(m.group(1), (int(m.group(2)), int(m.group(3))))
        return DType.make(text.strip())

    @staticmethod
    def from_numpy(dt) -> DType:
        """The plain element type of a NumPy dtype (f*, i*, u*, bool); ValueError when there is none."""
        dt = np.dtype(dt)
        if dt.kind == "b":
            return DType("bool", 1)
        if dt.kind in ("i", "u") or (dt.kind == "f" and dt.itemsize * 8 in _FLOAT_WIDTHS):
            return DType(dt.kind, dt.itemsize * 8)
        raise ValueError(f"no IR dtype for numpy dtype '{dt.name}'")


def _check_width(name: str, width: int, index: int) -> None:
    if not 1 <= width <= 64:
        raise TypeSyntaxError(f"{name} width must be 1..64, got {width}", index)


# The common types by name, as the enum this class replaced spelled them: DType.f32, DType.i8, ...
for _name in ("f16", "f32", "f64", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "bool"):
    setattr(DType, _name, DType.make(_name))
FLOATS = (DType.f16, DType.f32, DType.f64)


def check_array(ty: TensorType, array: np.ndarray) -> str | None:
    """Why `array` cannot hold a value of type `ty` (container dtype, shape, value range), or None."""
    if array.dtype != ty.dtype.numpy:
        return f"is declared {ty} (stored as {ty.dtype.numpy.name}) but holds {array.dtype.name}"
    if array.shape != tuple(ty.shape):
        return f"is declared {ty} but holds shape {list(array.shape)}"
    bad = out_of_range(ty.dtype, array)
    return f"is declared {ty} but {bad}" if bad else None


def out_of_range(dtype: DType, array: np.ndarray) -> str | None:
    """Which stored integers of `array` (in `dtype`'s container) lie outside `dtype`'s range, or None."""
    rng = dtype.int_range
    if rng is None or array.size == 0 or dtype.kind == "bool" or dtype.width == array.dtype.itemsize * 8:
        return None  # a full-width container cannot hold an out-of-range value
    lo, hi = int(array.min()), int(array.max())
    if lo < rng[0] or hi > rng[1]:
        return f"holds values in [{lo}, {hi}], outside [{rng[0]}, {rng[1]}]"
    return None


@dataclass(frozen=True)
class TensorType:
    """dtype + shape; a str dim is symbolic (bound at run time, e.g. the batch size N)."""

    dtype: DType
    shape: tuple[Dim, ...]

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(str(d) for d in self.shape)}]"

    @property
    def rank(self) -> int:
        """Number of dims."""
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        """True when every dim is a known int."""
        return all(isinstance(d, int) for d in self.shape)

    def with_shape(self, shape) -> TensorType:
        """Same dtype, another shape."""
        return TensorType(self.dtype, tuple(shape))

    @staticmethod
    def of(array: np.ndarray, dtype: DType | None = None) -> TensorType:
        """The static type of an array: `dtype` if given, else the plain type of its container."""
        return TensorType(dtype or DType.from_numpy(array.dtype), tuple(int(d) for d in array.shape))

    def matches(self, array: np.ndarray, bindings: dict[str, int]) -> bool:
        """Whether `array` fits this type, binding symbolic dims in `bindings` as it goes."""
        if array.dtype != self.dtype.numpy or array.ndim != self.rank:
            return False
        for want, got in zip(self.shape, array.shape):
            if isinstance(want, int):
                if want != got:
                    return False
            elif bindings.setdefault(want, got) != got:
                return False
        return True


def broadcast_shapes(a: tuple[Dim, ...], b: tuple[Dim, ...]) -> tuple[Dim, ...] | None:
    """NumPy broadcasting over possibly symbolic dims; None when the shapes do not broadcast."""
    out = []
    for i in range(max(len(a), len(b))):
        da = a[len(a) - 1 - i] if i < len(a) else 1
        db = b[len(b) - 1 - i] if i < len(b) else 1
        if da == db or db == 1:
            out.append(da)
        elif da == 1:
            out.append(db)
        else:
            return None
    return tuple(reversed(out))


def numel(shape: tuple[Dim, ...]) -> int | None:
    """Element count, or None when a dim is symbolic."""
    n = 1
    for d in shape:
        if not isinstance(d, int):
            return None
        n *= d
    return n
