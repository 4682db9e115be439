"""Section `c` of a converted MP model and `mpc verify --json` carry the counts of the emulator (MP
layers: no multiply, no divide; counted figures never above the static upper bounds of the C loops);
report.md renders the nested section under headings; a float MP graph sent to the C backend gets one
line that suggests --quantize 16."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import error_line, run_cli
from mpc.backends.c.resources import KINDS, counts_table

from mpc.ir import parse

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "models" / "digits_mlp.onnx"
TRAIN = ROOT / "examples" / "data" / "digits_train.npz"
MP_KINDS = ("fx.mp_dot", "fx.mp_conv2d")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """The first 48 training samples, as a --calib / --data file."""
    d = np.load(TRAIN)
    path = tmp_path_factory.mktemp("data") / "small.npz"
    np.savez(path, input=d["input"][:48], labels=d["labels"][:48])
    return path


def _check_counted(c: dict, static_rows: list[dict] | None = None) -> None:
    assert c["ops_source"].startswith("counted by the emulator: mean and max over 48 samples")
    rows = [r for r in c["ops_by_layer"] if r["op"] in MP_KINDS]
    assert rows and all(r["multiply"] == 0 and r["divide"] == 0 for r in rows)
    assert c["mp_layer_multiplies_and_divides"] == 0
    bounds = [r for r in static_rows or [] if r["op"] in MP_KINDS]
    for r, b in zip(rows, bounds, strict=bool(bounds)):   # bisection stops early, skips negative parts
        assert 0 < r["add"] <= b["add"] and 0 < r["compare"] <= b["compare"]
    for k in KINDS:
        assert c["ops_per_inference"][k] == pytest.approx(sum(r[k] for r in c["ops_by_layer"]), abs=0.05)
        assert c["ops_per_inference_max"][k] >= c["ops_per_inference"][k] - 1e-9


def test_section_c_counts_and_readable_markdown(tmp_path, capsys, small):
    out = tmp_path / "out"
    rc, _, err = run_cli(capsys, "convert", MLP, "--target", "mp", "--quantize", "16", "--emit", "c",
                         "--calib", small, "-o", out, "-q")
    assert rc == 0, err
    c = json.loads((out / "report.json").read_text())["sections"]["c"]
    g = parse((out / "model.mpc").read_text(), dict(np.load(out / "weights.npz")))
    _check_counted(c, counts_table(g)[0])
    md = (out / "report.md").read_text()
    body = md.split("\n## c\n", 1)[1].split("\n## ", 1)[0]
    for heading in ("### ops_per_inference", "### ops_per_inference_max", "### ops_by_layer", "### sizes"):
        assert f"\n{heading}\n" in body
    assert "| multiply | 0 |" in body.split("### ops_per_inference\n", 1)[1]
    assert all(len(line) < 200 for line in body.splitlines())   # no section flattened onto one line
    assert "ops_by_layer=" not in md and "{'op'" not in md


def test_verify_json_has_counted_ops(capsys, small):
    rc, out, err = run_cli(capsys, "verify", MLP, "--data", small, "--calib", small, "--target", "mp",
                           "--quantize", "16", "--emit", "c", "-q", "--json")
    assert rc == 0, err
    r = json.loads(out)
    assert r["c_mismatches"] == 0
    _check_counted(r["c_ops"])


def test_mp_graph_without_quantize_suggests_quantize_16(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "convert", MLP, "--target", "mp", "--gamma", "8", "--emit", "c",
                         "-o", tmp_path / "o", "-q")
    line = error_line(err)
    assert rc == 2 and "'mp.dot'" in line and "--quantize 16" in line
    assert not (tmp_path / "o").exists()
