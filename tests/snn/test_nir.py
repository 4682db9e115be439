"""NIR export read back with nir.read and run by a NumPy simulator of NIR's node equations written
here (forward Euler with step mpc.dt, input held over each step), spike for spike against mpc."""
from __future__ import annotations

import nir  # the `nir` package: in the test extra
import numpy as np
import pytest
from mpc.backends.nir_backend import write

from mpc.errors import UnsupportedOp
from mpc.ir import parse, run

RNG = np.random.default_rng(4)


def simulate(g, x, steps):
    """Each node's output stream [T, N, ...] from NIR's equations: Affine y = Wx + b; Linear y = Wx;
    IF dv = dt·r·I; LIF dv = dt/τ·(v_leak − v + r·I); spike z = v > v_threshold, then v = v_reset
    (or, with metadata mpc.reset = subtract, v −= the threshold θ = nextafter(v_threshold, +∞));
    v starts at mpc.v0·θ."""
    dt, meta = g.metadata["mpc.dt"], g.metadata
    order, out = _topological(g), {}
    for name in order:
        node = g.nodes[name]
        srcs = [a for a, b in g.edges if b == name]
        if isinstance(node, nir.Input):
            out[name] = np.stack([x] * steps)
            continue
        inp = out[srcs[0]]
        if isinstance(node, nir.Affine):
            out[name] = np.einsum("oi,tni->tno", node.weight, inp) + node.bias
        elif isinstance(node, nir.Linear):
            out[name] = np.einsum("oi,tni->tno", node.weight, inp)
        elif isinstance(node, (nir.IF, nir.LIF)):
            out[name] = _neuron(node, inp, dt, meta)
        else:
            out[name] = inp
    return out


def _neuron(node, inp, dt, meta):
    theta = np.nextafter(node.v_threshold, np.inf)
    v = meta["mpc.v0"] * theta * np.ones(inp.shape[1:])
    z = np.zeros_like(inp)
    for t in range(inp.shape[0]):
        if isinstance(node, nir.IF):
            v = v + dt * node.r * inp[t]
        else:
            v = v + dt / node.tau * (node.v_leak - v + node.r * inp[t])
        z[t] = v > node.v_threshold
        v = np.where(z[t] > 0, v - theta if meta["mpc.reset"] == "subtract" else node.v_reset, v)
    return z


def _topological(g):
    done, order = set(), []
    while len(order) < len(g.nodes):
        for name in sorted(g.nodes):
            if name not in done and all(a in done for a, b in g.edges if b == name):
                done.add(name)
                order.append(name)
    return order


NET = """graph @g(%x: f64[N,5]) -> (%y: f64[N,3]) {{
  weight @w0 : f64[5,4]
  weight @b0 : f64[4]
  weight @th0 : f64[4]
  weight @w1 : f64[4,3]
  weight @b1 : f64[3]
  weight @th1 : f64[1]
  weight @w2 : f64[3,3]
  %0 = snn.encode(%x) {{timesteps = 20, dt = 1.0}} : f64[20,N,5]
  %1 = nn.matmul(%0, @w0) : f64[20,N,4]
  %2 = nn.add(%1, @b0) : f64[20,N,4]
  %3 = snn.lif(%2, @th0) {{dt = 1.0{lif0}}} : f64[20,N,4]
  %4 = nn.matmul(%3, @w1) : f64[20,N,3]
  %5 = nn.add(%4, @b1) : f64[20,N,3]
  %6 = snn.lif(%5, @th1) {{dt = 1.0{lif1}}} : f64[20,N,3]
  %7 = nn.matmul(%6, @w2) : f64[20,N,3]
  %y = snn.decode(%7) {{mode = membrane}} : f64[N,3]
}}
"""


def assert_spike_for_spike(back, sim: dict, g, x) -> None:
    """Every LIF layer's spikes of the NIR simulation `sim` equal mpc's (some but not all firing), and so does
    the readout (the mean over time of the output node)."""
    got = run(g, {"x": x}, keep_all=True)
    lifs = [op for op in g.ops if op.kind == "snn.lif"]
    neurons = sorted((n for n, v in back.nodes.items() if isinstance(v, (nir.IF, nir.LIF))),
                     key=lambda n: int(n[1:].split("_")[0]))
    for op, name in zip(lifs, neurons):
        np.testing.assert_array_equal(sim[name], got[op.result.name])
        assert 0 < got[op.result.name].mean() < 1
    np.testing.assert_array_equal(sim["output"].mean(0), got["y"])


def _dyadic(*shape, scale=8):
    """Multiples of 1/scale: every sum below is exact, so no result depends on summation order."""
    return RNG.integers(-scale, scale + 1, shape) / scale


@pytest.mark.parametrize("lif0, lif1", [(", reset = zero", ", reset = zero"), (", v0 = 0.5", ", beta = 0.5, v0 = 0.5")])
def test_nir_export_runs_spike_for_spike_in_an_independent_simulator(tmp_path, lif0, lif1):
    w = {"w0": _dyadic(5, 4), "b0": _dyadic(4), "th0": np.array([0.5, 0.75, 1.0, 1.25]), "w1": _dyadic(4, 3),
         "b1": _dyadic(3), "th1": np.array([0.75]), "w2": _dyadic(3, 3)}
    g = parse(NET.format(lif0=lif0, lif1=lif1), w)
    write(g, tmp_path)
    back = nir.read(tmp_path / "model.nir")
    kinds = sorted(type(n).__name__ for n in back.nodes.values())
    assert kinds == sorted(["Input", "Affine", "Affine", "Linear", "IF", "LIF" if "beta" in lif1 else "IF", "Output"])
    assert back.metadata["mpc.timesteps"] == 20 and back.metadata["mpc.dt"] == 1.0
    x = RNG.integers(0, 16, (30, 5)) / 16
    sim = simulate(back, x, 20)
    assert_spike_for_spike(back, sim, g, x)


def test_nir_refuses_what_it_cannot_express(tmp_path):
    src = ("graph @g(%x: f32[4,N,1,4,4]) -> (%y: f32[4,N,1,2,2]) {\n"
           "  %y = snn.maxpool(%x) {kernel = [2, 2], strides = [2, 2]} : f32[4,N,1,2,2]\n}\n")
    with pytest.raises(UnsupportedOp, match="snn.maxpool.*cannot be exported to NIR: NIR has no spiking max-pool"):
        write(parse(src), tmp_path)
