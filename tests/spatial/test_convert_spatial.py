"""`mpc convert` of the exported spatial model: model.py matches onnxruntime, and converting twice gives
byte-identical files (deterministic names, attributes and embedded kernels)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from cli_helpers import run_cli

from spatial.torch_models import export, spatial_net

pytest.importorskip("torch")


def test_convert_twice_is_byte_identical_and_model_py_matches_onnxruntime(tmp_path, capsys):
    import onnxruntime as ort
    path = tmp_path / "net.onnx"
    export(spatial_net(), path, 20, dynamo=False)
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        rc, _, err = run_cli(capsys, "convert", path, "--target", "float", "-o", out, "-q")
        assert (rc, err) == (0, ""), err
    names = sorted(p.name for p in outs[0].iterdir())
    assert names == sorted(p.name for p in outs[1].iterdir()) and "model.py" in names
    for name in names:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    spec = importlib.util.spec_from_file_location("_spatial_net_model", outs[0] / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x = np.random.default_rng(4).standard_normal((5, 4, 16)).astype(np.float32)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = module.run({"x": x})["y"]
    assert got.shape == want.shape and got.dtype == want.dtype
    assert float(np.abs(got - want).max()) <= 2e-5 * max(1.0, float(np.abs(want).max()))
