"""Models exported with a static batch of 1 (torch.onnx.export without dynamic_axes).

The leading 1 of every input is imported as a symbolic batch `N` (--static-batch keeps it), so
verify and calibration use all the samples they are given; the source model still runs in
onnxruntime one sample at a time, as its static shape demands. Every number here is checked
against onnxruntime run on the source model sample by sample, in the test itself.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from mpc.cli import main
from mpc.frontend import load

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")   # the legacy exporter's


def _cnn(flatten: str):
    """A small CNN whose flatten is `size0` (x.view(x.size(0), -1)), `one` (x.view(1, -1)),
    `all` (x.view(-1), the batch folded into the features) or `softmax0` (softmax over dim 0)."""
    from torch import nn

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(8 * 8 * 8, 10)

        def forward(self, x):
            x = self.pool(torch.relu(self.conv(x)))
            if flatten == "all":
                return self.fc(x.view(-1))
            x = x.view(x.size(0), -1) if flatten == "size0" else x.view(1, -1)
            y = self.fc(x)
            return torch.softmax(y, 0) if flatten == "softmax0" else y

    torch.manual_seed(0)
    return CNN().eval()


def _export(tmp_path, flatten: str = "size0"):
    path = tmp_path / f"static_{flatten}.onnx"
    torch.onnx.export(_cnn(flatten), torch.randn(1, 3, 16, 16), str(path), input_names=["input"],
                      output_names=["logits"], dynamo=False)
    dims = [d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 16, 16]   # really static
    return path


def _data(tmp_path, n: int, seed: int = 0):
    x = np.random.default_rng(seed).uniform(0, 1, (n, 3, 16, 16)).astype(np.float32)
    path = tmp_path / f"d{n}.npz"
    np.savez(path, input=x)
    return path, x


def _ort_per_sample(model, x):
    import onnxruntime as ort
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])


def _cli(capsys, *argv):
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("flatten", ["size0", "one"])
def test_static_batch_imports_as_dynamic(tmp_path, flatten):
    model = _export(tmp_path, flatten)
    loaded = load(str(model))
    assert loaded.graph.inputs[0].type.shape == ("N", 3, 16, 16)
    assert loaded.graph.outputs[0].type.shape == ("N", 10)
    assert load(str(model), static_batch=True).graph.inputs[0].type.shape == (1, 3, 16, 16)


@pytest.mark.parametrize("flatten", ["size0", "one"])
def test_verify_static_batch_uses_every_sample(tmp_path, capsys, flatten):
    model = _export(tmp_path, flatten)
    data, x = _data(tmp_path, 32)
    rc, out, err = _cli(capsys, "verify", model, "--target", "float", "--data", data, "--json", "-q")
    assert (rc, err) == (0, "")
    r = json.loads(out)
    assert r["samples"] == 32
    ref = _ort_per_sample(model, x)
    assert r["max_abs_err"] <= 2e-5 * max(1.0, float(np.abs(ref).max()))
    assert r["top1_agreement"] == 1.0
    rc, out, _ = _cli(capsys, "verify", model, "--target", "float", "--samples", "32", "--json", "-q")
    assert rc == 0 and json.loads(out)["samples"] == 32


def test_converted_static_model_matches_onnxruntime(tmp_path, capsys):
    model = _export(tmp_path)
    data, x = _data(tmp_path, 32)
    rc, _, err = _cli(capsys, "convert", model, "--target", "float", "-o", tmp_path / "out", "-q")
    assert rc == 0, err
    rc, _, err = _cli(capsys, "run", tmp_path / "out", "--data", data, "-o", tmp_path / "pred.npz", "-q")
    assert rc == 0, err
    with np.load(tmp_path / "pred.npz") as f:
        got = f["logits"]
    ref = _ort_per_sample(model, x)
    assert got.shape == ref.shape == (32, 10)
    assert np.abs(got.astype(np.float64) - ref).max() <= 2e-5 * max(1.0, float(np.abs(ref).max()))


def test_mp_calibration_uses_the_whole_calib_file(tmp_path, capsys):
    model = _export(tmp_path)
    calib, _ = _data(tmp_path, 64, seed=1)
    rc, _, err = _cli(capsys, "convert", model, "--target", "mp", "--calib", calib, "-o", tmp_path / "out", "-q")
    assert rc == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    stats = next(p["stats"] for p in report["passes"] if p["name"].startswith("mp-calibrate"))
    assert stats["calib_samples"] == 64


def test_mp_calibration_warning_states_the_real_count(tmp_path, capsys):
    model = _export(tmp_path)
    rc, _, err = _cli(capsys, "convert", model, "--target", "mp", "--static-batch", "-o", tmp_path / "out")
    assert rc == 0, err
    assert "calibrating on 1 sample of U(0, 1)" in err, err


@pytest.mark.parametrize("flatten", ["all", "softmax0"])
def test_batch_that_cannot_be_followed_is_refused(tmp_path, capsys, flatten):
    model = _export(tmp_path, flatten)
    rc, _, err = _cli(capsys, "verify", model, "--target", "float", "--samples", "4")
    assert rc == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("mpc: error: ") and "--static-batch" in err, err
    rc, out, err = _cli(capsys, "verify", model, "--target", "float", "--static-batch", "--json", "-q")
    assert rc == 0, err
    assert json.loads(out)["samples"] == 1
