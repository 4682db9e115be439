"""Folders of .npz shards (`--data DIR`, `--calib DIR`): listing them in name order and joining them.
A leaf of the driver (it imports only the data layer), so the compiler can read a --calib folder."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from mpc.data import Dataset, load_data
from mpc.errors import BadInput


def is_sharded(path: str | None) -> bool:
    """Whether a --data/--calib path is a folder of shards."""
    return bool(path) and Path(path).is_dir()


def shard_paths(folder: str | Path) -> list[Path]:
    """The folder's .npz files in name order; BadInput when there are none."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix == ".npz" and p.is_file())
    if not paths:
        raise BadInput(f"{folder}: a data folder must hold .npz shards (found none)")
    return paths


def load_joined(folder: str | Path, graph, aliases: dict[str, str] | None = None) -> Dataset:
    """Every shard of `folder` read for `graph` and joined along the samples, in name order."""
    parts = [load_data(p, graph, aliases) for p in shard_paths(folder)]
    labelled = {d.labels is not None for d in parts}
    if len(labelled) > 1:
        raise BadInput(f"{folder}: either every shard has 'labels' or none")
    feeds = {k: np.concatenate([d.feeds[k] for d in parts]) for k in parts[0].feeds}
    labels = np.concatenate([d.labels for d in parts]) if labelled == {True} else None
    return Dataset(feeds, labels, f"{folder} ({len(parts)} shards)")


def load_sharded(folder: str | Path, graph, aliases: dict[str, str] | None = None):
    """`folder`'s shards as a `ShardedDataset`: each read for `graph` only when calibration reaches it."""
    from mpc.calib import ShardedDataset  # the capture service owns the type; imported late, as a leaf
    paths = shard_paths(folder)
    loaders = [functools.partial(load_data, p, graph, aliases) for p in paths]
    return ShardedDataset(loaders, f"{folder} ({len(paths)} shards)")
