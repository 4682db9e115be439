"""On the shipped digits models at T = 32, model.py with every synapse on spikes event-driven (the
numpy lowering with snn-event{max_density=1.0,...}) classifies like the interpreter's dense synapses
(nn.matmul + snn.lif) on the test set."""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from mpc.backends.base import emit
from mpc.backends.numpy_backend import BACKEND

from mpc.data import npz_bytes
from mpc.driver.compiler import Settings, compile_model, write_outdir
from mpc.ir import run

ROOT = Path(__file__).resolve().parents[2]
CASES = {"mlp": ("digits_mlp.onnx", "digits_train.npz", "digits_test.npz", 2, 540),
         "cnn": ("digits_cnn.onnx", "digits_img_train.npz", "digits_img_test.npz", 2, 160)}   # CNN: a slice (CI time)


@pytest.mark.parametrize("name", sorted(CASES))
def test_event_model_py_keeps_the_accuracy(tmp_path, name):
    onnx, train, test, lowered, n = CASES[name]
    settings = Settings(target="lif", quiet=True, calib=str(ROOT / "examples" / "data" / train))
    c = compile_model(str(ROOT / "examples" / "models" / onnx), settings)
    write_outdir(c, settings, tmp_path / "d", False)
    every = BACKEND.lowering.replace("snn-event", "snn-event{max_density=1.0,max_density_large=1.0}")
    every = every.replace("snn-chain,", "")   # op by op: snn-chain would fuse the whole MLP
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "weights.npz").write_bytes(npz_bytes({w: c.graph.weights[w] for w in c.graph.used_weights()}))
    emit(dataclasses.replace(BACKEND, lowering=every), c.graph, tmp_path / "m", "lif", c.ctx)
    text = (tmp_path / "m" / "model.py").read_text()
    assert text.count("= event_linear(") == lowered
    spec = importlib.util.spec_from_file_location(f"digits_event_{name}", tmp_path / "m" / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with np.load(ROOT / "examples" / "data" / test) as f:
        x, y = f["input"][:n], f["labels"][:n]
    got = mod.run({"input": x})["logits"].argmax(1)
    dense = run(c.graph, {"input": x})["logits"].argmax(1)   # model.mpc: BLAS matmuls + snn.lif
    assert np.mean(got == dense) >= 0.995                  # the order of additions may flip a near tie
    assert abs(np.mean(got == y) - np.mean(dense == y)) <= 1.5 / len(y)
    assert np.mean(got == y) > 0.9
