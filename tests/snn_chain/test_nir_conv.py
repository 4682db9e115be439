"""NIR export of a spiking conv net (Conv2d, IF/LIF, AvgPool2d, Flatten, Linear) read back with nir.read
and run by a NumPy simulator of NIR's node equations written here (convolution and pooling by explicit
loops over the kernel window; the neuron rule from tests/snn/test_nir.py), spike for spike against mpc.
Inputs and weights are dyadic and the pooling window has 4 units, so every value is exact."""
from __future__ import annotations

import nir
import numpy as np
import pytest
from mpc.backends.nir_backend import write
from snn.test_nir import _neuron, _topological, assert_spike_for_spike

from mpc.errors import UnsupportedOp
from mpc.ir import parse

RNG = np.random.default_rng(8)

NET = """graph @g(%x: f64[N,1,6,6]) -> (%y: f64[N,3]) {{
  weight @k0 : f64[2,1,3,3]
  weight @c0 : f64[2]
  weight @th0 : f64[2]
  weight @k1 : f64[3,2,3,3]
  weight @c1 : f64[3]
  weight @th1 : f64[1]
  weight @w2 : f64[27,3]
  %0 = snn.encode(%x) {{timesteps = 12, dt = 1.0}} : f64[12,N,1,6,6]
  %1 = nn.conv2d(%0, @k0, @c0) {{pads = [1, 1, 1, 1]}} : f64[12,N,2,6,6]
  %2 = snn.lif(%1, @th0) {{dt = 1.0{lif0}}} : f64[12,N,2,6,6]
  %3 = nn.avgpool2d(%2) {{kernel = [2, 2], strides = [2, 2]}} : f64[12,N,2,3,3]
  %4 = nn.conv2d(%3, @k1, @c1) {{pads = [1, 1, 1, 1]}} : f64[12,N,3,3,3]
  %5 = snn.lif(%4, @th1) {{dt = 1.0{lif1}}} : f64[12,N,3,3,3]
  %6 = nn.reshape(%5) {{shape = [0, 0, -1]}} : f64[12,N,27]
  %7 = nn.matmul(%6, @w2) : f64[12,N,3]
  %y = snn.decode(%7) {{mode = membrane}} : f64[N,3]
}}
"""


def _windows(x, kh, kw, sh, sw):
    """(i, j, x[..., i::sh, j::sw] cut to the output size) for every offset of the kernel window."""
    oh, ow = (x.shape[-2] - kh) // sh + 1, (x.shape[-1] - kw) // sw + 1
    for i in range(kh):
        for j in range(kw):
            yield i, j, x[..., i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]


def conv2d(node, inp):
    """NIR Conv2d on [T, N, C, H, W]: y[o] = Σ_c Σ_window w[o, c]·x[c] + b[o] (groups 1, dilation 1)."""
    assert node.groups == 1 and tuple(node.dilation) == (1, 1)
    ph, pw = node.padding
    x = np.pad(inp, [(0, 0)] * 3 + [(ph, ph), (pw, pw)])
    w = node.weight
    out = 0.0
    for i, j, patch in _windows(x, w.shape[2], w.shape[3], *node.stride):
        out = out + np.einsum("oc,tnchw->tnohw", w[:, :, i, j], patch)
    return out + node.bias[:, None, None]


def avgpool2d(node, inp):
    """NIR AvgPool2d (no padding): the mean over each window."""
    assert not np.any(node.padding)
    kh, kw = node.kernel_size
    parts = [p for _, _, p in _windows(inp, kh, kw, *node.stride)]
    return sum(parts) / len(parts)


def simulate(g, x, steps):
    """Each node's output stream [T, N, ...] (Input holds x over the steps)."""
    dt, meta, out = g.metadata["mpc.dt"], g.metadata, {}
    for name in _topological(g):
        node = g.nodes[name]
        srcs = [a for a, b in g.edges if b == name]
        inp = np.stack([x] * steps) if isinstance(node, nir.Input) else out[srcs[0]]
        if isinstance(node, nir.Conv2d):
            inp = conv2d(node, inp)
        elif isinstance(node, nir.AvgPool2d):
            inp = avgpool2d(node, inp)
        elif isinstance(node, nir.Flatten):
            inp = inp.reshape(inp.shape[:2] + (-1,))
        elif isinstance(node, nir.Linear):
            inp = np.einsum("oi,tni->tno", node.weight, inp)
        elif isinstance(node, (nir.IF, nir.LIF)):
            inp = _neuron(node, inp, dt, meta)
        out[name] = inp
    return out


def _dyadic(*shape, scale=8):
    return RNG.integers(-scale, scale + 1, shape) / scale


@pytest.mark.parametrize("lif0, lif1", [(", reset = zero", ", reset = zero"), (", beta = 0.5, v0 = 0.5", ", v0 = 0.5")])
def test_nir_conv_net_runs_spike_for_spike_in_an_independent_simulator(tmp_path, lif0, lif1):
    w = {"k0": _dyadic(2, 1, 3, 3), "c0": _dyadic(2), "th0": np.array([0.5, 0.75]), "k1": _dyadic(3, 2, 3, 3),
         "c1": _dyadic(3), "th1": np.array([0.75]), "w2": _dyadic(27, 3)}
    g = parse(NET.format(lif0=lif0, lif1=lif1), w)
    write(g, tmp_path)
    back = nir.read(tmp_path / "model.nir")
    kinds = sorted(type(n).__name__ for n in back.nodes.values())
    assert kinds == sorted(["Input", "Conv2d", "LIF" if "beta" in lif0 else "IF", "AvgPool2d", "Conv2d", "IF",
                            "Flatten", "Linear", "Output"])
    x = RNG.integers(0, 16, (7, 1, 6, 6)) / 16
    sim = simulate(back, x, 12)
    assert_spike_for_spike(back, sim, g, x)


@pytest.mark.parametrize("lif0, lif1, key", [("", ", reset = zero", "mpc.reset"), (", v0 = 0.5", "", "mpc.v0")])
def test_nir_refuses_layers_whose_reset_or_v0_differ(tmp_path, lif0, lif1, key):
    """NIR 1.0 has no reset-mode field, so the convention is one graph-wide metadata entry: a second layer
    with another value is refused, naming it, instead of being exported under the first one's rule."""
    w = {"k0": _dyadic(2, 1, 3, 3), "c0": _dyadic(2), "th0": np.array([0.5, 0.75]), "k1": _dyadic(3, 2, 3, 3),
         "c1": _dyadic(3), "th1": np.array([0.75]), "w2": _dyadic(27, 3)}
    with pytest.raises(UnsupportedOp, match=f"snn.lif.*{key} is one value for the whole NIR graph"):
        write(parse(NET.format(lif0=lif0, lif1=lif1), w), tmp_path)
