"""Tensor types: a dtype and a shape whose dims are ints or symbolic names like `N`."""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

Dim = int | str


class DType(enum.Enum):
    """Element types the IR knows; the value is the text spelling."""

    f32 = "f32"
    f64 = "f64"
    i64 = "i64"
    i32 = "i32"
    i8 = "i8"
    bool = "bool"

    @property
    def numpy(self) -> np.dtype:
        """The matching NumPy dtype."""
        return np.dtype(_TO_NUMPY[self])

    @staticmethod
    def from_numpy(dt) -> DType:
        """The DType of a NumPy dtype; ValueError when there is none."""
        name = np.dtype(dt).name
        for d, n in _TO_NUMPY.items():
            if n == name:
                return d
        raise ValueError(f"no IR dtype for numpy dtype '{name}'")


_TO_NUMPY = {DType.f32: "float32", DType.f64: "float64", DType.i64: "int64", DType.i32: "int32",
             DType.i8: "int8", DType.bool: "bool"}


@dataclass(frozen=True)
class TensorType:
    """dtype + shape; a str dim is symbolic (bound at run time, e.g. the batch size N)."""

    dtype: DType
    shape: tuple[Dim, ...]

    def __str__(self) -> str:
        return f"{self.dtype.value}[{','.join(str(d) for d in self.shape)}]"

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
    def of(array: np.ndarray) -> TensorType:
        """The static type of an array."""
        return TensorType(DType.from_numpy(array.dtype), tuple(int(d) for d in array.shape))

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
