"""`mpc finetune --ddp 2`: two gloo ranks train the digits MLP (mp target) to the accuracy of one process
(within 0.5 points on held-out digits), and the output folder is written once, like a single-process run's."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from cli_helpers import error_line, run_cli

from mpc.frontend import load_mpc

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "models" / "digits_mlp.onnx"
DATA = ROOT / "examples" / "data"


def _accuracy(folder: Path) -> float:
    """Top-1 accuracy of the written model.mpc on the test digits, from the argmax of the interpreter's logits."""
    from mpc.ir import run
    graph = load_mpc(str(folder / "model.mpc")).graph
    with np.load(DATA / "digits_test.npz") as f:
        logits = run(graph, {graph.inputs[0].name: f["input"]})[graph.outputs[0].name]
        return float((np.argmax(logits, 1) == f["labels"]).mean())


def test_ddp_two_ranks_match_one_process(capsys, tmp_path):
    with np.load(DATA / "digits_train.npz") as f:
        np.savez(tmp_path / "train.npz", input=f["input"][:640], labels=f["labels"][:640])
    common = ["finetune", MLP, "--target", "mp", "--data", tmp_path / "train.npz", "--epochs", "2", "-q"]
    rc, _, err = run_cli(capsys, *common, "-o", tmp_path / "one")
    assert rc == 0, err
    rc, _, err = run_cli(capsys, *common, "--ddp", "2", "-o", tmp_path / "two")
    assert rc == 0, err
    one, two = _accuracy(tmp_path / "one"), _accuracy(tmp_path / "two")
    assert one > 0.8 and abs(one - two) <= 0.005, (one, two)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "train.npz", "two"]   # no temporary left


def test_ddp_flag_errors(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "finetune", MLP, "--target", "lif", "--data", DATA / "digits_train.npz",
                         "--ddp", "2", "-o", tmp_path / "x")
    assert rc == 2 and error_line(err) == "--ddp applies to --target mp with the default AdamW optimizer only"
    rc, _, err = run_cli(capsys, "finetune", MLP, "--target", "mp", "--data", DATA / "digits_train.npz",
                         "--ddp", "0", "-o", tmp_path / "x")
    assert rc == 2 and error_line(err) == "--ddp: expected 1 to 64 processes, got 0"
