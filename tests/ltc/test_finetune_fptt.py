"""`mpc finetune --target ltc --method fptt|bptt`: a torch GRU + per-step Linear, converted to LTC neurons and
fine-tuned on sequences; the stepped run (one step at a time, state carried) equals the whole-sequence run."""
from __future__ import annotations

import numpy as np
import pytest
from cli_helpers import error_line, run_cli

torch = pytest.importorskip("torch")

from mpc.backends.torch_backend import lower
from mpc.backends.torch_rnn import GraphStepper

from mpc.frontend import load_onnx
from mpc.ir import run
from mpc.passmanager import run_pipeline


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.rnn, self.fc = torch.nn.GRU(3, 8), torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.rnn(x)[0])


def _export(path):
    torch.onnx.export(Net().eval(), (torch.rand(6, 4, 3),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"])


def test_stepped_graph_equals_the_whole_sequence(tmp_path):
    _export(tmp_path / "m.onnx")
    g = load_onnx(str(tmp_path / "m.onnx"), static_batch=True).graph
    run_pipeline(g, "canonicalize,lower-ltc,dce")
    x = np.random.default_rng(0).uniform(0, 3, (6, 4, 3)).astype(np.float32)
    whole = run(g, {"x": x})["y"]
    stepper = GraphStepper(lower(g), "x", "y")
    state, outs = stepper.init_state(4), []
    with torch.no_grad():
        for t in range(6):
            out, state = stepper.step(torch.from_numpy(x[t]), state)
            outs.append(out.numpy())
    np.testing.assert_allclose(np.stack(outs), whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["fptt", "bptt"])
def test_finetune_writes_a_model_with_trained_weights(tmp_path, capsys, method):
    _export(tmp_path / "m.onnx")
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 3, (16, 6, 3)).astype(np.float32)
    np.savez(tmp_path / "seq.npz", x=x, labels=(x[:, :, 0].mean(1) > 1.5).astype(np.int64))
    out = tmp_path / "out"
    rc, _, err = run_cli(capsys, "finetune", tmp_path / "m.onnx", "--target", "ltc", "--method", method, "--data",
                         tmp_path / "seq.npz", "--epochs", "1", "--batch-size", "8", "--static-batch", "-o", out, "-q")
    assert (rc, err) == (0, ""), err
    text = (out / "model.mpc").read_text()
    assert "snn.ltc" in text and ".ft" in text


def test_method_fptt_needs_the_ltc_target(tmp_path, capsys):
    _export(tmp_path / "m.onnx")
    np.savez(tmp_path / "seq.npz", x=np.zeros((2, 6, 3), np.float32), labels=np.zeros(2, np.int64))
    rc, _, err = run_cli(capsys, "finetune", tmp_path / "m.onnx", "--target", "float", "--method", "fptt", "--data",
                         tmp_path / "seq.npz", "--static-batch", "-o", tmp_path / "o")
    assert rc == 2 and "--method fptt applies to --target ltc" in error_line(err)
