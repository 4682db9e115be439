"""Models exported by both torch exporters at opsets 17 and 20 import and verify against onnxruntime.

The model (tests/spatial/torch_models.py) has Conv1d, PReLU, depthwise and grouped conv, a residual
Add, LayerNorm + GELU (exact and tanh), ConvTranspose2d, Upsample (Resize, nearest and bilinear) and
LogSoftmax; `mpc verify --target float` runs the model on default data through mpc and through
onnxruntime and must agree within 2e-5 relative (|err| / max(1, |source|)).
"""
from __future__ import annotations

import json

import onnx
import pytest
from cli_helpers import run_cli

from spatial.torch_models import export, spatial_net

pytest.importorskip("torch")

# below opset 20 the exporters write tanh-GELU with Pow/Tanh/Mul (the dynamo exporter as x + 0.044715 *
# Pow(x, 3)): those exports check the elementwise ops too
CASES = [(False, 17, True), (False, 20, True), (True, 17, True), (True, 20, True)]


@pytest.mark.parametrize("dynamo, opset, tanh_gelu", CASES,
                         ids=[f"{'dynamo' if d else 'torchscript'}-opset{o}" for d, o, _ in CASES])
def test_exported_model_verifies_within_2e_5(tmp_path, capsys, dynamo, opset, tanh_gelu):
    path = tmp_path / "net.onnx"
    export(spatial_net(tanh_gelu), path, opset, dynamo)
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert {"Conv", "PRelu", "LayerNormalization", "ConvTranspose", "Resize", "LogSoftmax"} <= ops
    assert ("Gelu" in ops) == (opset >= 20) and model.opset_import[0].version == opset
    rc, out, err = run_cli(capsys, "verify", path, "--target", "float", "--samples", "64", "--json", "-q")
    assert (rc, err) == (0, ""), err
    r = json.loads(out)
    assert r["max_rel_err"] <= 2e-5 and r["top1_agreement"] == 1.0, r
