"""`--calib DIR` for statistics-only passes: lower-lif's neuron scales and quantize's formats are computed
shard by shard and merged, giving byte-identical IR and weights to the same samples as one file, while
no more than one shard's samples are loaded or captured at a time."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from mpc.passes import lower_lif, quantize

import mpc.calib
import mpc.driver.shard_files

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "models" / "digits_mlp.onnx"
TRAIN = ROOT / "examples" / "data" / "digits_train.npz"
SPLITS = (0, 1, 600, 1257)   # three uneven shards of the whole training file, one of a single sample


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> dict[str, Path]:
    """digits_train.npz as one file and as a folder of three shards."""
    root = tmp_path_factory.mktemp("calib")
    with np.load(TRAIN) as f:
        x = f["input"]
    assert x.shape[0] == SPLITS[-1]
    (root / "dir").mkdir()
    for i, (a, b) in enumerate(itertools.pairwise(SPLITS)):
        np.savez(root / "dir" / f"s{i}.npz", input=x[a:b])
    np.savez(root / "one.npz", input=x)
    return {"file": root / "one.npz", "dir": root / "dir"}


def _convert(capsys, out: Path, calib: Path, *flags) -> dict[str, bytes]:
    rc, _, err = run_cli(capsys, "convert", MLP, "--calib", calib, "-o", out, "-q", *flags)
    assert rc == 0, err
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert {"model.mpc", "weights.npz"} <= set(files)
    return {k: v for k, v in files.items() if not k.startswith("report.")}   # reports name the --calib path


@pytest.mark.parametrize("flags", [
    ("--target", "lif", "--norm", "p99.9"),
    ("--target", "lif", "--norm", "p99.99", "--norm-granularity", "channel"),
    ("--target", "float", "--quantize", "8"),
    ("--target", "lif", "--timesteps", "4", "--quantize", "8"),   # time-major values captured per shard too
], ids=["lif-p99.9-layer", "lif-p99.99-channel", "quantize-8", "lif-quantize-8"])
def test_sharded_calibration_is_byte_identical_to_one_file(capsys, tmp_path, calib, flags):
    one = _convert(capsys, tmp_path / "one", calib["file"], *flags)
    sharded = _convert(capsys, tmp_path / "sharded", calib["dir"], *flags)
    assert one == sharded


def test_shards_are_loaded_and_captured_one_at_a_time(capsys, tmp_path, calib, monkeypatch):
    events: list[tuple[str, int]] = []
    real_load, real_lif, real_q = mpc.driver.shard_files.load_data, lower_lif.capture, quantize.capture

    def load(*a, **kw):
        d = real_load(*a, **kw)
        events.append(("load", d.size))
        return d

    def spy(real):
        def capture(graph, data, select, **kw):
            events.append(("capture", data.size))
            return real(graph, data, select, **kw)
        return capture
    monkeypatch.setattr(mpc.driver.shard_files, "load_data", load)
    monkeypatch.setattr(lower_lif, "capture", spy(real_lif))
    monkeypatch.setattr(quantize, "capture", spy(real_q))
    sizes = [b - a for a, b in itertools.pairwise(SPLITS)]
    interleaved = [e for n in sizes for e in (("load", n), ("capture", n))]
    _convert(capsys, tmp_path / "lif", calib["dir"], "--target", "lif")
    assert events == interleaved
    events.clear()
    _convert(capsys, tmp_path / "q", calib["dir"], "--target", "float", "--quantize", "8")
    # then the C backend's operation counts read the head of the data: shards only until 256 samples
    assert events == interleaved + [("load", 1), ("load", 599)]


def test_merged_channel_statistics_equal_single_process():
    rng = np.random.default_rng(5)
    shards = [rng.standard_normal((n, 3, 2, 2)) for n in (1, 40, 9)]
    merged = mpc.calib.ChannelStats.of(shards[0]).merge(mpc.calib.ChannelStats.of(shards[1]))
    merged = merged.merge(mpc.calib.ChannelStats.of(shards[2])).as_samples()
    joined = np.concatenate(shards)
    per = np.moveaxis(joined, 1, 0).reshape(3, -1)
    for q in (0.0, 50.0, 99.9, 100.0):
        assert np.array_equal(np.percentile(merged, q, axis=0), np.percentile(per, q, axis=1))
    assert np.percentile(merged.ravel(), 99.99) == np.percentile(joined, 99.99)
