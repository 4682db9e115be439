"""The MP target on CNN building blocks beyond a plain conv stack: residual adds, BatchNorm, strided,
depthwise and grouped convolutions, average and global average pooling (a tiny torch net exported
to ONNX). Checked against onnxruntime (outputs) and a float64 MP reference (the depthwise layer)."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from mp.mp_reference import patches, y_mp

from mpc.cli import main
from mpc.driver.compiler import Settings, compile_model
from mpc.ir import run

torch = pytest.importorskip("torch")
nn = torch.nn


class Blocks(nn.Module):
    """A stem, a residual block, a strided block with a 1x1 projection, avg pool, depthwise + pointwise,
    a grouped conv, a global average pool and a linear head."""

    def __init__(self):
        super().__init__()
        self.c0, self.b0 = nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.c1, self.b1 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16)
        self.proj = nn.Conv2d(8, 16, 1, stride=2, bias=False)
        self.dw, self.pw = nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.Conv2d(16, 16, 1)
        self.gc = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        h = torch.relu(self.b0(self.c0(x)))
        h = torch.relu(h + self.b1(self.c1(h)))
        h = torch.relu(self.b2(self.c2(h)) + self.proj(h))
        h = nn.functional.avg_pool2d(h, 2)
        h = torch.relu(self.pw(torch.relu(self.dw(h))))
        h = torch.relu(self.gc(h))
        return self.fc(nn.functional.adaptive_avg_pool2d(h, 1).flatten(1))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(onnx path, calibration .npz, test .npz) for the seeded net (BatchNorm statistics made non-trivial)."""
    torch.manual_seed(0)
    net = Blocks().eval()
    with torch.no_grad():
        for bn in (net.b0, net.b1, net.b2):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    d = tmp_path_factory.mktemp("blocks")
    torch.onnx.export(net, torch.rand(1, 1, 16, 16), d / "blocks.onnx", input_names=["input"], output_names=["out"],
                      dynamic_axes={"input": {0: "N"}}, dynamo=False)
    x = np.random.default_rng(0).uniform(0, 1, (200, 1, 16, 16)).astype(np.float32)
    np.savez(d / "calib.npz", input=x[:128])
    np.savez(d / "test.npz", input=x[128:])
    return str(d / "blocks.onnx"), str(d / "calib.npz"), str(d / "test.npz")


@pytest.fixture(scope="module")
def compiled(model):
    """The net converted for the mp target, calibrated on its calibration set."""
    return compile_model(model[0], Settings(target="mp", calib=model[1], quiet=True)).graph


def test_every_block_becomes_mp_and_keeps_its_structure(compiled):
    g = compiled
    kinds = [op.kind for op in g.ops]
    assert not {"nn.conv2d", "nn.matmul", "nn.gemm", "nn.batchnorm"} & set(kinds), kinds
    convs = [op.attrs for op in g.ops if op.kind == "mp.conv2d"]
    assert sorted((a.group, a.strides) for a in convs) == sorted(
        [(1, (1, 1))] * 3 + [(1, (2, 2))] * 2 + [(16, (1, 1)), (4, (1, 1))])
    data_adds = [op for op in g.ops if op.kind == "nn.add" and not any(v.is_weight for v in op.operands)]
    assert len(data_adds) == 2    # the two residual adds stay additions of two activations
    assert "nn.avgpool2d" in kinds and ("nn.global_avgpool" in kinds or "nn.reduce_mean" in kinds)
    assert kinds.count("mp.dot") == 1


def test_outputs_and_layers_track_onnxruntime(capsys, model, compiled):
    path, calib, test = model
    capsys.readouterr()
    assert main(["verify", path, "--target", "mp", "--calib", calib, "--data", test, "--json", "-q"]) == 0
    r = json.loads(capsys.readouterr().out)
    sess = ort.InferenceSession(onnx.load(path).SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.load(test)["input"]
    ref = sess.run(None, {"input": x})[0].astype(np.float64)
    got = run(compiled, {"input": x})["out"]
    assert np.corrcoef(ref.ravel(), got.astype(np.float64).ravel())[0, 1] > 0.99
    assert r["max_abs_err"] == pytest.approx(np.abs(got - ref).max(), rel=1e-4)
    assert min(row["pearson"] for row in r["layers"]) > 0.97, r["layers"]
    # per neuron it is harder: on noise inputs deep neurons vary little around their means (measured medians
    # 0.65 to 0.99, the deepest lowest), while layer-wide figures are dominated by differences between channels
    assert min(row["neuron_pearson"]["median"] for row in r["layers"]) > 0.6, r["layers"]


def test_depthwise_layer_is_mp_per_channel(model, compiled):
    g, test = compiled, model[2]
    op = next(op for op in g.ops if op.kind == "mp.conv2d" and op.attrs.group == 16)
    x = run(g, {"input": np.load(test)["input"][:4]}, keep_all=True)
    xin, got = x[op.operands[0].name].astype(np.float64), x[op.result.name].astype(np.float64)
    w, gain = (g.weights[v.name].astype(np.float64) for v in op.operands[1:3])
    off = g.weights[op.operands[3].name].astype(np.float64) if len(op.operands) == 4 else np.zeros(w.shape[0])
    a = op.attrs
    for ch in (0, 7, 15):   # channel ch sees only input channel ch: D = 9
        rows, _, _ = patches(xin[:, ch:ch + 1], 3, 3, a.strides, a.pads, a.dilations)
        ref = gain[ch] * y_mp(rows * a.c, w[ch].reshape(1, -1) / a.c, a.gamma)[:, 0] + off[ch]
        np.testing.assert_allclose(got[:, ch].ravel(), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
