"""`--target ltc`: a torch GRU/RNN + per-step Linear becomes an LTC spiking layer whose weights are the source's
candidate path (checked against the torch module's own parameters), runs, and lowers to torch identically."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mpc.backends.torch_backend import lower

from mpc.frontend import load_onnx
from mpc.ir import run
from mpc.passmanager import run_pipeline


class Net(torch.nn.Module):
    def __init__(self, cls):
        super().__init__()
        torch.manual_seed(0)
        self.rnn, self.fc = cls(3, 6), torch.nn.Linear(6, 2)

    def forward(self, x):
        return self.fc(self.rnn(x)[0])


def _graph(tmp_path, cls):
    net = Net(cls).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(net, (torch.rand(5, 2, 3),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"])
    return net, load_onnx(str(path), static_batch=True).graph


@pytest.mark.parametrize("cls", [torch.nn.GRU, torch.nn.RNN], ids=["gru", "rnn"])
def test_rnn_layers_become_ltc_initialised_from_the_source(tmp_path, cls):
    net, g = _graph(tmp_path, cls)
    stats = run_pipeline(g, "canonicalize,lower-ltc,dce")
    kinds = [op.kind for op in g.ops]
    assert "snn.ltc" in kinds and "nn.gru" not in kinds and "nn.rnn" not in kinds, kinds
    assert stats is not None
    ltc = next(op for op in g.ops if op.kind == "snn.ltc")
    w_in, w_rec, b, _, b_tau = (g.weights[v.name] for v in ltc.operands[1:6])
    h = 6
    # torch orders GRU gates (r, z, n): the candidate n is ONNX's h gate; ONNX z is torch z
    rows = slice(2 * h, 3 * h) if cls is torch.nn.GRU else slice(0, h)
    p = {k: v.detach().numpy() for k, v in net.rnn.named_parameters()}
    np.testing.assert_array_equal(w_in, p["weight_ih_l0"][rows])
    np.testing.assert_array_equal(w_rec, p["weight_hh_l0"][rows])
    np.testing.assert_allclose(b, p["bias_ih_l0"][rows] + p["bias_hh_l0"][rows], rtol=1e-6)
    want_tau = -(p["bias_ih_l0"][h:2 * h] + p["bias_hh_l0"][h:2 * h]) if cls is torch.nn.GRU else np.full(h, 4.0)
    np.testing.assert_allclose(b_tau, want_tau, rtol=1e-6)
    x = np.random.default_rng(0).uniform(0, 2, (5, 2, 3)).astype(np.float32)
    ref = run(g, {"x": x})
    got = lower(g)({"x": torch.from_numpy(x)})
    for k, v in ref.items():
        np.testing.assert_allclose(got[k].detach().numpy(), v, rtol=1e-5, atol=1e-5)
