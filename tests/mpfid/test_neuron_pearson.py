"""Per-neuron correlation (`mpc verify --json`, `--plots`): checked against NumPy's corrcoef on
activations captured independently (onnxruntime for the source, the interpreter for the MP graph)."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from cli_helpers import error_line, run_cli

from mpc.cli import main
from mpc.driver.compiler import Settings, compile_model
from mpc.driver.oracle import layer_pairs
from mpc.ir import run
from mpc.mp.fidelity import NeuronPearson

MLP = "examples/models/digits_mlp.onnx"
TRAIN, TEST = "examples/data/digits_train.npz", "examples/data/digits_test.npz"


def corrcoef_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Column-wise Pearson of two (rows, neurons) arrays, one np.corrcoef per column."""
    return np.array([np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(a.shape[1])])


@pytest.mark.parametrize("shape", [(300, 7), (40, 5, 3, 3)], ids=["dense", "conv"])
def test_sliced_accumulation_matches_corrcoef(shape):
    rng = np.random.default_rng(0)
    a = rng.normal(size=shape) * 3 + 5
    b = 0.7 * a + rng.normal(size=shape) * rng.uniform(0.1, 2, size=(1, shape[1]) + (1,) * (len(shape) - 2))
    acc = NeuronPearson()
    for s in (slice(0, 13), slice(13, 14), slice(14, None)):     # uneven slices, one of a single sample
        acc.add(a[s], b[s])
    rows = (lambda t: t.transpose(0, 2, 3, 1).reshape(-1, shape[1])) if len(shape) == 4 else (lambda t: t)
    np.testing.assert_allclose(acc.values(), corrcoef_columns(rows(a), rows(b)), rtol=1e-10, atol=1e-12)


def test_constant_neuron_is_undefined_not_counted():
    a = np.random.default_rng(1).normal(size=(50, 3))
    b = a.copy()
    b[:, 1] = 2.0
    s = NeuronPearson().add(a, b).summary()
    assert s["neurons"] == 3 and s["undefined"] == 1 and s["min"] == pytest.approx(1.0)


def captured(layers, onnx_path, feeds):
    """Source activations from onnxruntime, each layer's tensor added as an extra graph output."""
    model = onnx.load(onnx_path)
    names = [t for _, t, _ in layers]
    model.graph.output.extend([onnx.helper.make_empty_tensor_value_info(n) for n in names])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(names, sess.run(names, feeds)))


def test_verify_json_neuron_summary_matches_corrcoef(capsys, tmp_path):
    capsys.readouterr()
    assert main(["verify", MLP, "--target", "mp", "--calib", TRAIN, "--data", TEST, "--json", "-q",
                 "--plots", str(tmp_path / "figs")]) == 0
    r = json.loads(capsys.readouterr().out)
    assert "_neuron_values" not in r
    graph = compile_model(MLP, Settings(target="mp", calib=TRAIN, quiet=True)).graph
    feeds = {"input": np.load(TEST)["input"]}
    layers = layer_pairs(graph, onnx.load(MLP))
    src = captured(layers, MLP, feeds)
    got = run(graph, feeds, keep_all=True)
    rows = {row["name"]: row["neuron_pearson"] for row in r["layers"]}
    assert len(rows) == len(layers) >= 3
    for name, tensor, value in layers:
        a = np.asarray(src[tensor], np.float64).reshape(-1, src[tensor].shape[-1])
        b = np.asarray(got[value.name], np.float64).reshape(a.shape)
        keep = (a.std(0) > 0) & (b.std(0) > 0)
        ref = corrcoef_columns(a[:, keep], b[:, keep])
        assert rows[name]["neurons"] == a.shape[1] and rows[name]["undefined"] == int((~keep).sum())
        assert rows[name]["min"] == pytest.approx(ref.min(), abs=1e-6)
        assert rows[name]["p5"] == pytest.approx(np.percentile(ref, 5), abs=1e-6)
        assert rows[name]["median"] == pytest.approx(np.median(ref), abs=1e-6)
    figs = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert figs == ["layer_pearson.png", "neuron_pearson.png"]
    assert all((tmp_path / "figs" / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figs)


def test_plots_refuses_an_existing_folder(capsys, tmp_path):
    (tmp_path / "figs").mkdir()
    rc, _, err = run_cli(capsys, "verify", MLP, "--target", "float", "--samples", "4", "--plots", tmp_path / "figs")
    assert rc == 2 and "figs" in error_line(err)

