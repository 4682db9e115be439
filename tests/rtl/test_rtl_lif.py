"""The Verilog LIF layers simulated with Icarus Verilog: spike counts of a LIF layer (soft and zero reset,
leak, refractory, saturating and wrapping membranes) equal a plain-Python LIF written here from the
definition and the emulator; a 3-layer LIF network (MAC, LIF, spike-gated synapse, LIF, spike-gated
synapse, decode) equals the emulator at P = 1 and P > 1; verilator -Wall is clean; Yosys finds no
multiplier in the spike-gated synapse or the leaky LIF layer; an impossible --parallel is one error."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from mpc.backends.base import lower
from mpc.backends.verilog import configured, render_rtl
from mpc.backends.verilog.resources import resources
from mpc.backends.verilog.sim import lint, simulate

from mpc.data import Dataset
from mpc.driver.verify_fx import emulator_io
from mpc.errors import BadFlag, UnsupportedOp
from mpc.ir import parse

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("verilator") is None,
                                reason="needs iverilog and verilator (installed by .ci/run)")

LIF = """graph @lif(%x: f32[N,6]) -> (%y: f32[N,6]) {{
  weight @th : fx<10,4>[{nth}]
  weight @u0 : fx<10,4>[1]
  %0 = fx.quantize(%x) {{to = "fx<8,4>"}} : fx<8,4>[N,6]
  %1 = fx.encode(%0) {{timesteps = 5}} : fx<8,4>[5,N,6]
  %2 = fx.lif(%1, @th, @u0) {{{attrs}}} : fx<2,0>[5,N,6]
  %3 = fx.decode(%2) {{to = "fx<6,0>", mode = sum}} : fx<6,0>[N,6]
  %y = fx.dequantize(%3) : f32[N,6]
}}"""

NET = """graph @net(%x: f32[N,5]) -> (%y: f32[N,4]) {
  weight @m : fx<6,4>[5,6]
  weight @th1 : fx<10,4>[6]
  weight @u1 : fx<10,4>[1]
  weight @w2 : fx<6,4>[6,4]
  weight @b2 : fx<8,4>[4]
  weight @th2 : fx<10,4>[1]
  weight @u2 : fx<10,4>[1]
  weight @w3 : fx<6,4>[4,4]
  %0 = fx.quantize(%x) {to = "fx<8,4>"} : fx<8,4>[N,5]
  %1 = fx.matmul(%0, @m) {to = "fx<16,8>"} : fx<16,8>[N,6]
  %2 = fx.cast(%1) {to = "fx<8,4>"} : fx<8,4>[N,6]
  %3 = fx.encode(%2) {timesteps = 4} : fx<8,4>[4,N,6]
  %4 = fx.lif(%3, @th1, @u1) {mem_bits = 12, beta = 7, beta_frac = 3} : fx<2,0>[4,N,6]
  %5 = fx.matmul(%4, @w2) {to = "fx<9,4>"} : fx<9,4>[4,N,4]
  %6 = fx.add(%5, @b2) {to = "fx<10,4>"} : fx<10,4>[4,N,4]
  %7 = fx.cast(%6) {to = "fx<8,4>"} : fx<8,4>[4,N,4]
  %8 = fx.lif(%7, @th2, @u2) {mem_bits = 10, reset = zero, refractory = 1} : fx<2,0>[4,N,4]
  %9 = fx.matmul(%8, @w3) {to = "fx<8,4>"} : fx<8,4>[4,N,4]
  %10 = fx.decode(%9) {to = "fx<12,6>"} : fx<12,6>[N,4]
  %11 = fx.cast(%10) {to = "fx<8,4>"} : fx<8,4>[N,4]
  %y = fx.dequantize(%11) : f32[N,4]
}"""

ATTRS = {"soft": "mem_bits = 10", "zero": "mem_bits = 10, reset = zero",
         "leak-floor-refractory": "mem_bits = 12, beta = 13, beta_frac = 4, rounding = floor, refractory = 2",
         "leak-zero-wrap": "mem_bits = 9, beta = 5, beta_frac = 3, reset = zero, overflow = wrap"}


def _lif_graph(attrs: str, per_channel: bool):
    th = np.array([20, 7, 33, 12, 50, 9] if per_channel else [17], np.int16)
    return parse(LIF.format(nth=th.size, attrs=attrs), {"th": th, "u0": np.array([-3], np.int16)})


def _net_graph():
    rng = np.random.default_rng(5)
    w = {"m": rng.integers(-32, 32, (5, 6)), "th1": rng.integers(8, 40, 6), "u1": [0],
         "w2": rng.integers(-32, 32, (6, 4)), "b2": rng.integers(-20, 20, 4), "th2": [12], "u2": [2],
         "w3": rng.integers(-32, 32, (4, 4))}
    w["w2"][1] = 0       # a pruned input of the spike-gated synapse: no schedule entry
    w["w3"][2, :1] = 0
    wide = ("th1", "u1", "th2", "u2")   # fx<10,4> is stored in int16, the others in int8
    return parse(NET, {k: np.asarray(v, np.int16 if k in wide else np.int8) for k, v in w.items()})


def _simulate(tmp_path, g, parallel: int, x: np.ndarray):
    lowered, _ = lower(configured(parallel), g)
    qin, qout = emulator_io(lowered, Dataset({g.inputs[0].name: x}, None, "uniform"))
    rtl = render_rtl(lowered)
    win, wout = lowered.ops[0].result.type.dtype.width, lowered.outputs[0].producer.operands[0].type.dtype.width
    got, lat, ii = simulate(rtl, qin, win, qout.shape[1:], wout, tmp_path)
    return qin, qout.astype(np.int64), got, (lat, ii), lowered


def _reference_counts(q: np.ndarray, th: np.ndarray, u0: int, a: dict, steps: int) -> np.ndarray:
    """Spike counts of the integer LIF, one unit at a time, written from its definition (Python ints)."""
    mb, b, f = a.get("mem_bits"), a.get("beta", 1), a.get("beta_frac", 0)
    out = np.zeros(q.shape, np.int64)
    for s, c in np.ndindex(*q.shape):
        u, wait, theta = u0, 0, int(th[c % th.size])
        for _ in range(steps):
            if wait:
                wait -= 1
                continue
            lk = b * u + (0 if f == 0 or a.get("rounding") == "floor" else 1 << (f - 1))
            v = (lk >> f) + int(q[s, c])
            lo, hi = -(1 << (mb - 1)), (1 << (mb - 1)) - 1
            v = ((v - lo) % (1 << mb)) + lo if a.get("overflow") == "wrap" else min(max(v, lo), hi)
            if v >= theta:
                out[s, c] += 1
                v, wait = (v - theta if a.get("reset", "soft") == "soft" else 0), a.get("refractory", 0)
            u = v
    return out


@pytest.mark.parametrize("key, parallel, per_channel", [("soft", 1, False), ("zero", 2, True),
                                                        ("leak-floor-refractory", 3, True),
                                                        ("leak-zero-wrap", 1, False)])
def test_lif_layer_equals_the_definition_and_the_emulator(tmp_path, key, parallel, per_channel):
    g = _lif_graph(ATTRS[key], per_channel)
    x = np.random.default_rng(1).uniform(-6, 14, (40, 6)).astype(np.float32)
    qin, want, got, _, _ = _simulate(tmp_path, g, parallel, x)
    attrs = dict(kv.split(" = ") for kv in ATTRS[key].split(", "))
    attrs = {k: int(v) if v.isdigit() else v for k, v in attrs.items()}
    ref = _reference_counts(qin, g.weights["th"], -3, attrs, 5)
    assert len(np.unique(ref)) >= 3   # the inputs exercise silent, sometimes and often spiking units
    assert np.array_equal(want, ref)
    assert got.shape == want.shape and int((got != want).sum()) == 0


@pytest.mark.parametrize("parallel", [1, 2])
def test_lif_network_equals_the_emulator(tmp_path, parallel):
    g = _net_graph()
    x = np.random.default_rng(2).uniform(-4, 4, (30, 5)).astype(np.float32)
    _, want, got, (lat, ii), lowered = _simulate(tmp_path, g, parallel, x)
    assert len(np.unique(want)) > 5
    assert got.shape == want.shape and int((got != want).sum()) == 0
    assert [op.kind for op in lowered.ops if op.kind.startswith("hw.")] == \
        ["hw.mac_dense", "hw.lif", "hw.spike_dense", "hw.lif", "hw.spike_dense"]
    # analytical latency: MAC 5 inputs x 6/P groups (+1); LIF 4 steps x units/P (+1); synapses: schedule (+1)
    res = resources(lowered, [(op.results[0].name, op) for op in lowered.ops if op.kind.startswith("hw.")])
    lif = [r["latency_cycles"] for r in res["layers"].values() if r["kind"] == "hw.lif"]
    assert lif == [4 * 6 // parallel + 1, 4 * 4 // parallel + 1]
    assert all(r["multipliers"] == 0 for r in res["layers"].values() if r["kind"] != "hw.mac_dense")
    assert lat == res["latency_cycles"] and ii == res["initiation_interval_cycles"]


def test_verilator_lint_clean(tmp_path):
    for i, (g, p) in enumerate([(_net_graph(), 2), (_lif_graph(ATTRS["leak-floor-refractory"], True), 3),
                                (_lif_graph(ATTRS["leak-zero-wrap"], False), 1)]):
        d = tmp_path / str(i)
        d.mkdir()
        for name, body in render_rtl(lower(configured(p), g)[0]).items():
            (d / name).write_text(body)
        assert lint(d) == ""


@pytest.mark.skipif(shutil.which("yosys") is None, reason="needs yosys (installed by .ci/run)")
def test_spike_gated_synapse_and_leak_have_no_multiplier(tmp_path):
    """Yosys keeps a $mul cell for every multiplication after constant folding: the MAC layer has one
    (so the check can fail), the spike-gated synapses and the leaky LIF layer none."""
    rtl = render_rtl(lower(configured(2), _net_graph())[0])
    cells = {}
    for name, body in rtl.items():
        (tmp_path / name).write_text(body)
    for top in ("l00_mac_dense", "l03_lif", "l04_spike_dense"):
        stat = tmp_path / f"{top}.txt"
        flow = f"hierarchy -top {top}; proc; flatten; opt -full; wreduce; opt"
        subprocess.run(["yosys", "-q", "-p", f"read_verilog {tmp_path / (top + '.v')}; {flow}; tee -q -o {stat} stat"],
                       capture_output=True, text=True, check=True, timeout=300)
        cells[top] = stat.read_text()
    assert "$mul" in cells["l00_mac_dense"]
    assert "$add" in cells["l04_spike_dense"] and "$mul" not in cells["l04_spike_dense"]
    assert "$add" in cells["l03_lif"] and "$mul" not in cells["l03_lif"]


def test_impossible_parallel_is_one_located_error():
    with pytest.raises(BadFlag, match=r"--parallel 4: fx.lif %2 has 6 neurons per step, which 4 does not divide"):
        lower(configured(4), _lif_graph(ATTRS["soft"], False))


def test_same_graph_same_files():
    a = render_rtl(lower(configured(2), _net_graph())[0])
    assert a == render_rtl(lower(configured(2), _net_graph())[0])
    assert sorted(a)[:6] == ["l00_mac_dense.v", "l01_cast.v", "l02_encode.v", "l03_lif.v", "l04_spike_dense.v",
                             "l05_add.v"]


def test_time_major_mac_layer_is_refused_by_name():
    """A synapse on currents that are not spikes would need T samples per beat: refused, not mis-rendered."""
    text = """graph @g(%x: f32[N,6]) -> (%y: f32[N,4]) {
  weight @m : fx<6,4>[6,4]
  %0 = fx.quantize(%x) {to = "fx<8,4>"} : fx<8,4>[N,6]
  %1 = fx.encode(%0) {timesteps = 4} : fx<8,4>[4,N,6]
  %2 = fx.matmul(%1, @m) {to = "fx<18,8>"} : fx<18,8>[4,N,4]
  %3 = fx.decode(%2) {to = "fx<24,10>"} : fx<24,10>[N,4]
  %y = fx.dequantize(%3) : f32[N,4]
}"""
    g = parse(text, {"m": np.ones((6, 4), np.int8)})
    with pytest.raises(UnsupportedOp, match=r"hw.mac_dense.*<text>:5:3.*not on time-major values"):
        render_rtl(lower(configured(1), g)[0])
