"""Every snn op rendered into model.py gives the interpreter's values (same kernels, same shapes)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from mpc.backends.numpy_backend import render_model

from mpc.data import npz_bytes
from mpc.ir import parse, run

GRAPHS = {
    "pool": """graph @g(%x: f32[N,1,4,4]) -> (%y: f32[N,1,2,2], %z: f32[N,1,2,2]) {
  %0 = snn.encode(%x) {timesteps = 7, dt = 1.0, mode = poisson, seed = 4} : f32[7,N,1,4,4]
  %1 = snn.maxpool(%0) {kernel = [2, 2], strides = [2, 2]} : f32[7,N,1,2,2]
  %y = snn.decode(%1) {mode = count} : f32[N,1,2,2]
  %z = snn.decode(%1) {mode = first_spike, dt = 0.5} : f32[N,1,2,2]
}
""",
    "nlif": """graph @g(%x: f32[N,3]) -> (%y: f32[N,2], %z: f32[N,2]) {
  weight @w : f32[3,2]
  weight @b : f32[2]
  weight @th : f32[2]
  %0 = snn.encode(%x) {timesteps = 9, dt = 0.25, mode = ttfs, window = 1.0} : f32[9,N,3]
  %1 = nn.matmul(%0, @w) : f32[9,N,2]
  %2 = snn.nlif(%1, @b) {dt = 0.25, tau = 1.0, window = 1.0, layer = 1} : f32[9,N,2]
  %y = snn.decode(%2) {mode = ttfs, dt = 0.25, window = 1.0, readout = 8} : f32[N,2]
  %3 = snn.lif(%1, @th) {dt = 0.25, beta = 0.5, reset = zero, refractory = 1, v0 = 0.5} : f32[9,N,2]
  %z = snn.decode(%3) {mode = membrane, beta = 0.9} : f32[N,2]
}
""",
}


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_model_py_matches_the_interpreter(tmp_path, name):
    rng = np.random.default_rng(2)
    w = {"w": rng.uniform(-1, 1, (3, 2)).astype(np.float32), "b": np.float32([0.1, -0.05]),
         "th": np.float32([0.2, 0.3])}
    g = parse(GRAPHS[name], w)
    (tmp_path / "model.py").write_text(render_model(g, "lif"))
    (tmp_path / "weights.npz").write_bytes(npz_bytes({k: g.weights[k] for k in g.used_weights()}))
    spec = importlib.util.spec_from_file_location(f"snn_model_{name}", tmp_path / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x = rng.random((6,) + tuple(g.inputs[0].type.shape[1:])).astype(np.float32)
    got, want = mod.run({"x": x}), run(g, {"x": x})
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    assert any(np.any(v != 0) for v in want.values())
