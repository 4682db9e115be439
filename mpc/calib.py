"""Activation capture: run a graph on a `Dataset` and return chosen values, for passes that need data.

This is the one way calibration data reaches passes (mp-calibrate uses it; no pass keeps a private
interpreter). `capture(graph, data, select)` splits the dataset into batches of `batch_size` samples
along the inputs' leading axis, runs every op through `interp.apply` (the interpreter's own kernels,
so values equal `interp.run`'s on the same batch) and returns the selected values by name,
concatenated over batches along axis 0. A selector is a value name, a `Value`, an `Op` (its results)
or a predicate `op -> bool` (the results of every op it accepts).

Options:
- `hook(op, inputs, outputs)` is called after each op with its operand and result arrays; returning
  a sequence of arrays substitutes the op's results for everything downstream (None keeps them).
  mp-calibrate fits a layer in its hook and feeds the calibrated layer's output forward.
- `kernels` overrides the kernel of some op kinds (kind -> `fn(k, *arrays)`), as `interp.run` does;
  mp-calibrate computes the float network by running MP ops as their exact dense products.
- `dtype` casts float inputs and weights before they reach the kernels (calibration runs in
  float64); kernels still see the op's declared types in `k.in_types`.
- `batch_size=None` runs the whole dataset as one batch: a hook that fits on every sample needs it.

Selected values must lead with the batch (a value computed from weights alone has no batch axis and
is refused). A progress bar over ops × batches shows on a terminal or with `progress`, never when
`quiet`.

Sharded calibration data (`ShardedDataset`, a folder of .npz shards) is never joined here: `per_shard`
runs a capture on one shard at a time, reduces every captured value to a mergeable summary (by default
`RangeStats`, the value's samples sorted: exact min, max and percentiles) and merges the summaries in
shard order, so at most one shard's activations are held at once. Statistics-only passes (lower-lif,
quantize) use it; a pass that fits on every sample at once (mp-calibrate) needs the joined `Dataset`.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from mpc.data import Dataset, batches
from mpc.ir import Graph, Op, Value, apply
from mpc.progress import progress_bar

Selector = str | Value | Op | Callable[[Op], bool]
Hook = Callable[[Op, list[np.ndarray], tuple[np.ndarray, ...]], Sequence[np.ndarray] | None]


def select_values(graph: Graph, select: Iterable[Selector]) -> list[Value]:
    """The values `select` names (inputs or op results), in order, each once; KeyError for unknown names."""
    by_name = {v.name: v for v in graph.inputs} | {r.name: r for op in graph.ops for r in op.results}
    chosen: dict[int, Value] = {}
    for s in select:
        chosen.update((id(v), v) for v in _selected(graph, by_name, s))
    return list(chosen.values())


def _selected(graph: Graph, by_name: dict[str, Value], s: Selector) -> list[Value]:
    if isinstance(s, Value):
        return [s]
    if isinstance(s, Op):
        return list(s.results)
    if not isinstance(s, str):
        return [r for op in graph.ops if s(op) for r in op.results]
    if s not in by_name:
        raise KeyError(f"graph @{graph.name} has no value '%{s}' (weights are not captured)")
    return [by_name[s]]


def _last_uses(graph: Graph) -> dict[int, int]:
    return {id(v): i for i, op in enumerate(graph.ops) for v in op.operands}


def _run_batch(graph: Graph, env: dict[int, np.ndarray], weight: Callable[[str], np.ndarray], keep: set[int],
               hook: Hook | None, kernels: Mapping[str, Callable], tick: Callable[[], object]) -> None:
    """Run every op on one batch; `env` starts with the inputs by id and ends with the kept values."""
    last = _last_uses(graph)
    for i, op in enumerate(graph.ops):
        args = [weight(v.name) if v.is_weight else env[id(v)] for v in op.operands]
        outs = apply(op, args, kernels.get(op.kind))
        sub = hook(op, args, outs) if hook else None
        if sub is not None:
            outs = _substitute(op, tuple(sub))
        env.update((id(r), a) for r, a in zip(op.results, outs))
        for v in op.operands:   # free what no later op reads
            if last.get(id(v)) == i and id(v) not in keep:
                env.pop(id(v), None)
        tick()


def _substitute(op: Op, outs: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    if len(outs) != len(op.results):   # a bug in the hook, not in the user's data
        raise ValueError(f"hook gave {len(outs)} arrays for the {len(op.results)} results of {op!r}")
    return outs


def _caster(dtype) -> Callable[[np.ndarray], np.ndarray]:
    if dtype is None:
        return lambda a: a
    return lambda a: a.astype(dtype) if a.dtype.kind == "f" else a


def capture(graph: Graph, data: Dataset, select: Iterable[Selector] = (), *, batch_size: int | None = 256,
            hook: Hook | None = None, kernels: Mapping[str, Callable] | None = None, dtype=None,
            desc: str = "capture", quiet: bool = True, progress: bool = False) -> dict[str, np.ndarray]:
    """Run `graph` on `data` in batches; the selected values by name, concatenated over batches."""
    if data.size == 0:
        raise ValueError("capture needs at least one sample")
    values = select_values(graph, select)
    size = batch_size or data.size
    cast = _caster(dtype)
    cache: dict[str, np.ndarray] = {}

    def weight(name: str) -> np.ndarray:
        if name not in cache:
            cache[name] = cast(graph.weights[name])
        return cache[name]

    keep = {id(v) for v in values}
    parts: dict[int, list[np.ndarray]] = {id(v): [] for v in values}
    bar = progress_bar(total=math.ceil(data.size / size) * len(graph.ops), desc=desc, quiet=quiet,
                       progress=progress)
    for feeds, _ in batches(data, size):
        env = {id(v): cast(feeds[v.name]) for v in graph.inputs}
        _run_batch(graph, env, weight, keep, hook, kernels or {}, bar.update)
        rows = next(iter(feeds.values())).shape[0]
        for v in values:
            parts[id(v)].append(_check_batch(v, env[id(v)], rows))
    bar.close()
    return {v.name: _join(parts[id(v)]) for v in values}


def _join(parts: list[np.ndarray]) -> np.ndarray:
    """One batch as it is (no copy: equal to the interpreter's array), several concatenated."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _check_batch(v: Value, a: np.ndarray, rows: int) -> np.ndarray:
    if a.ndim == 0 or a.shape[0] != rows:
        raise ValueError(f"value '%{v.name}' {list(a.shape)} does not lead with the batch of {rows} "
                         "samples: it cannot be captured over batches")
    return a


@dataclasses.dataclass
class RangeStats:
    """Mergeable activation-range summary: min, max, count and the sorted samples (exact percentiles)."""

    sorted_values: np.ndarray

    @classmethod
    def of(cls, a: np.ndarray) -> RangeStats:
        """The summary of one shard's values."""
        return cls(np.sort(np.asarray(a, np.float64).ravel()))

    def merge(self, other: RangeStats) -> RangeStats:
        """The summary of both shards (a sorted merge: exact, no sketch)."""
        return RangeStats(np.sort(np.concatenate([self.sorted_values, other.sorted_values]), kind="stable"))

    def percentile(self, q: float) -> float:
        """The q-th percentile (linear interpolation, as numpy.percentile)."""
        return float(np.percentile(self.sorted_values, q))

    @property
    def min(self) -> float:
        """Smallest value."""
        return float(self.sorted_values[0])

    @property
    def max(self) -> float:
        """Largest value."""
        return float(self.sorted_values[-1])


@dataclasses.dataclass
class ChannelStats:
    """Mergeable per-channel summary of activations [N, C, ...]: each channel's samples, sorted (row c)."""

    sorted_rows: np.ndarray

    @classmethod
    def of(cls, a: np.ndarray) -> ChannelStats:
        """The summary of one shard's activations [N, C, ...]."""
        a = np.asarray(a, np.float64)
        return cls(np.sort(np.moveaxis(a, 1, 0).reshape(a.shape[1], -1), axis=1))

    def merge(self, other: ChannelStats) -> ChannelStats:
        """The summary of both shards (exact: every sample is kept)."""
        return ChannelStats(np.sort(np.concatenate([self.sorted_rows, other.sorted_rows], axis=1), axis=1,
                                    kind="stable"))

    def as_samples(self) -> np.ndarray:
        """The samples as an array [M, C] (column c: channel c), for statistics written for [N, C, ...]."""
        return self.sorted_rows.T


class ShardedDataset:
    """Calibration data kept in shards: `shards()` loads one `Dataset` at a time, never all of them."""

    def __init__(self, loaders: Sequence[Callable[[], Dataset]], source: str):
        if not loaders:
            raise ValueError("a sharded dataset needs at least one shard")
        self.loaders, self.source = list(loaders), source

    def shards(self) -> Iterator[Dataset]:
        """Each shard, loaded when it is reached (the previous one may be freed)."""
        for load in self.loaders:
            yield load()

    def head(self, n: int) -> Dataset:
        """The first `n` samples (all if fewer) as one `Dataset`, reading shards only until there are n."""
        parts: list[Dataset] = []
        for shard in self.shards():
            parts.append(Dataset({k: v[:n - sum(p.size for p in parts)] for k, v in shard.feeds.items()}, None,
                                 shard.source))
            if sum(p.size for p in parts) >= n:
                break
        feeds = {k: np.concatenate([p.feeds[k] for p in parts]) for k in parts[0].feeds}
        return Dataset(feeds, None, f"the first samples of {self.source}")


def per_shard(data: Dataset | ShardedDataset, compute: Callable[[Dataset], Mapping[str, np.ndarray]],
              summarize: Callable[[np.ndarray], object] = RangeStats.of) -> dict[str, object]:
    """`compute` (a capture) on each shard in turn, every value reduced by `summarize` and merged in shard
    order; a plain `Dataset` is one shard."""
    merged: dict[str, object] = {}
    for shard in data.shards() if isinstance(data, ShardedDataset) else [data]:
        for name, a in compute(shard).items():
            s = summarize(a)
            merged[name] = merged[name].merge(s) if name in merged else s
    return merged
