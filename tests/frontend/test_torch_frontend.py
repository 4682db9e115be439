"""The PyTorch frontend: both exporters, TorchScript files, factory specs, errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mpc.errors import BadInput, BadModel
from mpc.frontend import load
from mpc.ir import print_graph, run

from . import models as M

torch = pytest.importorskip("torch")

MOD = M.__name__  # tests.frontend.models, or frontend.models under pytest's rootdir-less import
CASES = [(f"{MOD}:torch_mlp", (1, 16)), (f"{MOD}:torch_cnn", (1, 3, 8, 8))]
ROOT = Path(__file__).resolve().parents[2]


def _against_torch(loaded, module, shape, batch=5):
    x = np.random.default_rng(0).standard_normal((batch,) + tuple(shape[1:])).astype(np.float32)
    with torch.no_grad():
        ref = module.eval()(torch.from_numpy(x)).numpy()
    got = run(loaded.graph, {loaded.input_names["input"]: x})[loaded.output_names["output"]]
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= M.TOL * max(1.0, float(np.abs(ref).max()))
    assert (got.argmax(1) == ref.argmax(1)).all()


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
@pytest.mark.parametrize("spec,shape", CASES, ids=["mlp", "cnn"])
def test_exporters_match_onnxruntime_and_torch(spec, shape, exporter):
    loaded = load(spec, shape, exporter=exporter)
    assert loaded.graph.inputs[0].type.shape[0] == "N"
    assert loaded.input_names == {"input": "input"} and loaded.graph.outputs[0].name == "output"
    assert loaded.source == spec and loaded.onnx_model is not None
    M.check(loaded.onnx_model, batch=5)
    M.roundtrip(loaded)
    factory = getattr(M, spec.rsplit(":", 1)[1])
    _against_torch(loaded, factory(), shape)
    names = set(loaded.graph.weights)
    assert any(n.endswith("weight") for n in names), names


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_exporter_variants_of_pooling_and_clip(exporter):
    spec, shape = f"{MOD}:torch_gap_cnn", (1, 3, 9, 9)
    loaded = load(spec, shape, exporter=exporter)
    kinds = [op.kind for op in loaded.graph.ops]
    assert "nn.global_avgpool" in kinds and "nn.clip" in kinds and "nn.leaky_relu" in kinds
    M.check(loaded.onnx_model, batch=4)
    M.roundtrip(loaded)
    _against_torch(loaded, M.torch_gap_cnn(), shape)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_file(tmp_path):
    module = M.torch_cnn().eval()
    path = tmp_path / "cnn.pt"
    torch.jit.trace(module, torch.zeros(2, 3, 8, 8)).save(str(path))
    loaded = load(str(path), (1, 3, 8, 8))
    assert loaded.graph.name == "cnn"
    M.check(loaded.onnx_model, batch=4)
    _against_torch(loaded, module, (1, 3, 8, 8))


def test_factory_from_a_file(tmp_path):
    src = tmp_path / "net.py"
    src.write_text("import torch\n\ndef make():\n    torch.manual_seed(0)\n"
                   "    return torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Tanh())\n")
    loaded = load(f"{src}:make", (1, 8))
    assert loaded.graph.name == "make"
    assert "nn.tanh" in print_graph(loaded.graph)
    M.check(loaded.onnx_model)


def test_factory_errors(tmp_path):
    with pytest.raises(BadInput, match="cannot import module 'no_such_pkg.mod'"):
        load("no_such_pkg.mod:make", (1, 4))
    with pytest.raises(BadInput, match="has no callable 'nothing'"):
        load(f"{MOD}:nothing", (1, 4))
    with pytest.raises(BadInput, match="expected a torch.nn.Module"):
        load(f"{MOD}:cnn", (1, 4))
    with pytest.raises(BadInput, match="needs --input-shape"):
        load(f"{MOD}:torch_mlp")
    with pytest.raises(BadInput, match="unknown exporter"):
        load(f"{MOD}:torch_mlp", (1, 16), exporter="fx")
    with pytest.raises(BadModel, match="torch.onnx.export"):
        load(f"{MOD}:torch_mlp", (1, 7))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_errors(tmp_path):
    with pytest.raises(BadModel, match="no such file"):
        load(str(tmp_path / "missing.pt"), (1, 4))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(BadModel, match="not a readable TorchScript file") as e:
        load(str(bad), (1, 4))
    assert str(bad) in str(e.value)
    path = tmp_path / "m.pt"
    torch.jit.script(torch.nn.ReLU()).save(str(path))
    with pytest.raises(BadInput, match="dynamo exporter cannot export TorchScript"):
        load(str(path), (1, 4), exporter="dynamo")


def test_missing_torch_is_a_one_line_bad_input():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from mpc.errors import BadInput\nfrom mpc.frontend import load\n"
            "try:\n    load('tests.frontend.models:torch_mlp', (1, 16))\n"
            "except BadInput as e:\n    print(e)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run_ = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
    out = run_.stdout
    assert out.strip() == "the PyTorch frontend needs torch: pip install 'mpc[torch]'"
