"""The snn op family against references written here from the definitions: a plain-Python LIF
(spike for spike), Poisson statistics, the spiking max-pool rule, the decoders, the n-LIF time code;
and the text form round trip."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mpc.errors import MPCError
from mpc.ir import parse, print_graph, run

RNG = np.random.default_rng(5)


def lif_reference(x, theta, beta, soft, refractory, v0):
    """Plain Python LIF: x [T, M] list of lists, theta [M]; spikes as a list of lists of 0/1."""
    steps, m = len(x), len(x[0])
    out = [[0.0] * m for _ in range(steps)]
    for j in range(m):
        u, wait = v0 * theta[j], 0
        for t in range(steps):
            if wait:
                wait -= 1
                continue
            u = beta * u + x[t][j]
            if u >= theta[j]:
                out[t][j] = 1.0
                u = u - theta[j] if soft else 0.0
                wait = refractory
    return out


def _graph(body: str, x_type: str, y_type: str) -> str:
    return f"graph @g(%x: {x_type}) -> (%y: {y_type}) {{\n{body}}}\n"


def _round_trip(src, weights):
    g = parse(src, weights)
    assert print_graph(g) == src
    return g


@pytest.mark.parametrize("beta, reset, refractory, v0", [(1.0, "soft", 0, 0.0), (0.8, "zero", 0, 0.5),
                                                          (0.95, "soft", 2, 0.25), (1.0, "zero", 1, 0.0)])
def test_lif_matches_plain_python_reference_spike_for_spike(beta, reset, refractory, v0):
    x = (RNG.random((20, 2, 3)) * 1.2 - 0.1)   # float64: no rounding between the two loops
    theta = np.array([0.7, 1.0, 1.6])
    attrs = "dt = 1.0" + (f", beta = {beta!r}" if beta != 1 else "") + (", reset = zero" if reset == "zero" else "")
    attrs += f", refractory = {refractory}" if refractory else ""
    attrs += f", v0 = {v0!r}" if v0 else ""
    src = _graph(f"  weight @th : f64[3]\n  %y = snn.lif(%x, @th) {{{attrs}}} : f64[20,N,3]\n",
                 "f64[20,N,3]", "f64[20,N,3]")
    g = _round_trip(src, {"th": theta})
    got = run(g, {"x": x})["y"]
    ref = lif_reference(x.reshape(20, 6).tolist(), np.tile(theta, 2).tolist(), beta, reset == "soft",
                        refractory, v0)
    np.testing.assert_array_equal(got.reshape(20, 6), np.array(ref))
    assert 0 < got.sum() < got.size   # the case exercises both outcomes


def test_lif_scalar_threshold_equals_a_channel_vector_of_it():
    x = RNG.random((6, 2, 4, 3, 3)).astype(np.float32)
    body = "  weight @th : f32[{}]\n  %y = snn.lif(%x, @th) {{dt = 1.0}} : f32[6,2,4,3,3]\n"
    one = parse(_graph(body.format(""), "f32[6,2,4,3,3]", "f32[6,2,4,3,3]"), {"th": np.float32(0.9)})
    vec = parse(_graph(body.format(4), "f32[6,2,4,3,3]", "f32[6,2,4,3,3]"), {"th": np.full(4, 0.9, np.float32)})
    np.testing.assert_array_equal(run(one, {"x": x})["y"], run(vec, {"x": x})["y"])


def test_poisson_encoder_rate_and_determinism():
    """Mean rate within 5 sigma of p per unit; same seed same spikes, another seed other spikes."""
    p = np.array([[0.0, 0.1, 0.5, 0.9, 1.0, 1.7, -0.3]], np.float64)
    steps = 4000
    src = _graph(f"  %y = snn.encode(%x) {{timesteps = {steps}, dt = 1.0, mode = poisson, seed = {{}}}} : "
                 f"f64[{steps},1,7]\n", "f64[1,7]", f"f64[{steps},1,7]")
    s = run(parse(src.replace("{}", "7")), {"x": p})["y"]
    assert set(np.unique(s)) <= {0.0, 1.0}
    want = np.clip(p[0], 0, 1)
    sigma = np.sqrt(want * (1 - want) / steps)
    assert np.all(np.abs(s[:, 0].mean(0) - want) <= 5 * sigma + 1e-12)
    again = run(parse(src.replace("{}", "7")), {"x": p})["y"]
    other = run(parse(src.replace("{}", "8")), {"x": p})["y"]
    np.testing.assert_array_equal(s, again)
    assert not np.array_equal(s, other)
    # successive steps independent: lag-1 correlation of the p = 0.5 train near 0
    a = s[:, 0, 2]
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 5 / math.sqrt(steps)


def test_constant_encoder_repeats_the_input():
    x = RNG.random((3, 2)).astype(np.float32)
    src = _graph("  %y = snn.encode(%x) {timesteps = 4, dt = 0.5} : f32[4,N,2]\n", "f32[N,2]", "f32[4,N,2]")
    y = run(_round_trip(src, {}), {"x": x})["y"]
    np.testing.assert_array_equal(y, np.stack([x] * 4))


def maxpool_reference(x, k, s):
    """The documented rule, one window at a time in plain Python: x [T, H, W]."""
    steps, h, w = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    out = np.zeros((steps, oh, ow))
    count = np.zeros((h, w))
    leader = {(i, j): (i * s, j * s) for i in range(oh) for j in range(ow)}
    for t in range(steps):
        count += x[t] != 0
        for (i, j), (li, lj) in leader.items():
            cells = [(i * s + a, j * s + b) for a in range(k) for b in range(k)]
            best = max(count[c] for c in cells)
            if best > count[li, lj]:   # a new leader: the first cell (row-major) at the highest count
                li, lj = next(c for c in cells if count[c] == best)
                leader[i, j] = (li, lj)
            out[t, i, j] = x[t, li, lj]
    return out


def test_spiking_maxpool_follows_the_highest_running_count():
    x = (RNG.random((12, 2, 3, 4, 5)) < RNG.random((1, 2, 3, 4, 5))).astype(np.float32)
    src = _graph("  %y = snn.maxpool(%x) {kernel = [2, 2], strides = [2, 2]} : f32[12,2,3,2,2]\n",
                 "f32[12,2,3,4,5]", "f32[12,2,3,2,2]")
    y = run(_round_trip(src, {}), {"x": x})["y"]
    for n in range(2):
        for c in range(3):
            np.testing.assert_array_equal(y[:, n, c], maxpool_reference(x[:, n, c], 2, 2))


def test_spiking_maxpool_passes_the_earliest_single_spike():
    """One spike per unit: the output is one spike at the window's earliest spike time."""
    first = RNG.permutation(16 * 9).reshape(1, 1, 12, 12) % 40   # spike steps, ties included
    x = (np.arange(40)[:, None, None, None, None] == first[None]).astype(np.float32)
    src = _graph("  %y = snn.maxpool(%x) {kernel = [3, 3], strides = [3, 3]} : f32[40,1,1,4,4]\n",
                 "f32[40,1,1,12,12]", "f32[40,1,1,4,4]")
    y = run(parse(src), {"x": x})["y"]
    assert np.all(y.sum(0) == 1)
    want = first[0, 0].reshape(4, 3, 4, 3).min((1, 3))
    np.testing.assert_array_equal(y[:, 0, 0].argmax(0), want)


@pytest.mark.parametrize("mode", ["count", "rate", "membrane", "first_spike"])
def test_decoders(mode):
    x = (RNG.random((7, 3, 2)) < 0.3).astype(np.float64)
    x[:, 0, 0] = 0   # a unit that never fires
    src = _graph(f"  %y = snn.decode(%x) {{mode = {mode}, beta = 0.5, dt = 0.25}} : f64[3,2]\n",
                 "f64[7,3,2]", "f64[3,2]")
    y = run(_round_trip(src, {}), {"x": x})["y"]
    for n in range(3):
        for j in range(2):
            train = list(x[:, n, j])
            u = 0.0
            for v in train:
                u = 0.5 * u + v
            first = next((t for t, v in enumerate(train) if v), 7)
            want = {"count": sum(train), "rate": sum(train) / 7, "membrane": u / 7, "first_spike": 0.25 * first}
            assert y[n, j] == pytest.approx(want[mode], abs=1e-12)


def test_ttfs_code_reads_back_its_value_and_error_shrinks_with_dt():
    """encode(ttfs) then decode(ttfs) at the readout step gives the value back, within the rounding
    of the spike to the step grid: error <= K·dt/(2τ), so it falls with dt."""
    x = np.concatenate([RNG.random(200), [0.0, 1.0, -0.5]])[None]
    errs = []
    for dt in (0.1, 0.01, 0.001):
        sw = round(4.0 / dt)
        src = _graph(f"  %0 = snn.encode(%x) {{timesteps = {sw + 1}, dt = {dt!r}, mode = ttfs, tau = 0.5, "
                     f"window = 4.0}} : f64[{sw + 1},1,203]\n"
                     f"  %y = snn.decode(%0) {{mode = ttfs, dt = {dt!r}, tau = 0.5, window = 4.0, readout = {sw}}}"
                     " : f64[1,203]\n", "f64[1,203]", "f64[1,203]")
        y = run(_round_trip(src, {}), {"x": x})["y"]
        k = 1 / (1 - math.exp(-4.0 / 0.5))
        err = np.abs(y - np.clip(x, 0, 1)).max()
        assert err <= k * dt / (2 * 0.5) * 1.0001
        errs.append(err)
    assert errs[0] > errs[1] > errs[2]


def test_verifier_rejects_bad_snn_ops():
    bad = _graph("  weight @th : f32[4]\n  %y = snn.lif(%x, @th) {dt = 1.0} : f32[5,N,3]\n",
                 "f32[5,N,3]", "f32[5,N,3]")
    with pytest.raises(MPCError, match=r"theta must be a scalar or one per channel \[3\]"):
        parse(bad, {"th": np.ones(4, np.float32)})
    no_t = _graph("  %y = snn.encode(%x) {dt = 1.0} : f32[5,N,3]\n", "f32[N,3]", "f32[5,N,3]")
    with pytest.raises(MPCError, match="2:8: op 'snn.encode' requires attribute 'timesteps'"):
        parse(no_t)
