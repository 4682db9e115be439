"""Sharded data: `mpc verify --data DIR` merges per-shard summaries into the figures an unsharded verify
computes on the joined file (accuracy and max error exactly, correlations to 1e-12), whichever executor
ran the shards; `--calib DIR` calibrates like the joined file; merged range statistics are exact."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli

from mpc.driver.shards import RangeStats

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "models" / "digits_mlp.onnx"
TEST = ROOT / "examples" / "data" / "digits_test.npz"
SPLITS = (0, 70, 71, 160)   # uneven shards, one of a single sample


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """The first 160 test digits as one file, and as a folder of three shards; a calibration file and folder."""
    root = tmp_path_factory.mktemp("shards")
    with np.load(TEST) as f:
        x, y = f["input"][:SPLITS[-1]], f["labels"][:SPLITS[-1]]
    np.savez(root / "all.npz", input=x, labels=y)
    (root / "dir").mkdir()
    (root / "calib").mkdir()
    for i, (a, b) in enumerate(itertools.pairwise(SPLITS)):
        np.savez(root / "dir" / f"part-{i}.npz", input=x[a:b], labels=y[a:b])
        np.savez(root / "calib" / f"c{i}.npz", input=x[a:b])
    np.savez(root / "calib.npz", input=x)
    return {"all": root / "all.npz", "dir": root / "dir", "calib": root / "calib.npz", "calib_dir": root / "calib"}


def _verify(capsys, data_path, calib, *extra) -> dict:
    rc, out, err = run_cli(capsys, "verify", MLP, "--target", "mp", "--calib", calib, "--data", data_path,
                           "--json", "-q", *extra)
    assert rc == 0, err
    return json.loads(out)


def test_sharded_verify_equals_unsharded(capsys, data):
    whole = _verify(capsys, data["all"], data["calib"])
    sharded = _verify(capsys, data["dir"], data["calib"])
    assert sharded["samples"] == whole["samples"] == 160
    assert sharded["data"].endswith("(3 shards)")
    for key in ("source_accuracy", "converted_accuracy", "top1_agreement", "max_abs_err", "max_rel_err",
                "top1_degenerate"):
        assert sharded[key] == whole[key], key
    assert sharded["mean_abs_err"] == pytest.approx(whole["mean_abs_err"], rel=1e-12, abs=0)
    assert [r["name"] for r in sharded["layers"]] == [r["name"] for r in whole["layers"]]
    for s, w in zip(sharded["layers"], whole["layers"]):
        assert abs(s["pearson"] - w["pearson"]) <= 1e-12, s["name"]
        for k in ("min", "p5", "median"):
            assert abs(s["neuron_pearson"][k] - w["neuron_pearson"][k]) <= 1e-12, (s["name"], k)
    # the accuracy again, from the definition: argmax of onnxruntime's logits against the labels
    import onnxruntime as ort
    with np.load(data["all"]) as f:
        logits = ort.InferenceSession(str(MLP)).run(None, {"input": f["input"]})[0]
        assert sharded["source_accuracy"] == float((logits.argmax(1) == f["labels"]).mean())


def test_sharded_verify_same_json_on_process_pool(capsys, data):
    local = _verify(capsys, data["dir"], data["calib"])
    pool = _verify(capsys, data["dir"], data["calib"], "--jobs", "2")
    assert json.dumps(local, sort_keys=True) == json.dumps(pool, sort_keys=True)


def test_calib_folder_calibrates_like_the_joined_file(capsys, data):
    one = _verify(capsys, data["all"], data["calib"])
    sharded = _verify(capsys, data["all"], data["calib_dir"])
    assert json.dumps(one, sort_keys=True) == json.dumps(sharded, sort_keys=True).replace(
        str(data["calib_dir"]), str(data["calib"]))


def test_empty_data_folder_is_one_error_line(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "verify", MLP, "--target", "float", "--data", tmp_path)
    assert rc == 2 and err == f"mpc: error: {tmp_path}: a data folder must hold .npz shards (found none)\n"


def test_merged_range_statistics_equal_single_process():
    rng = np.random.default_rng(3)
    shards = [rng.standard_normal(n) * 3 + 1 for n in (1, 500, 77)]
    merged = RangeStats.of(shards[0]).merge(RangeStats.of(shards[1])).merge(RangeStats.of(shards[2]))
    joined = np.concatenate(shards)
    assert (merged.min, merged.max) == (joined.min(), joined.max())
    for q in (0.0, 1.0, 50.0, 99.0, 99.9, 100.0):
        assert merged.percentile(q) == np.percentile(joined, q)
