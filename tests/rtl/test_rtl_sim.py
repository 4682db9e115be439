"""The Verilog backend simulated with Icarus Verilog: every output integer equals the emulator's (the
interpreter's fx kernels) for an MP dense layer, a MAC layer (pruned weights included) and a 3-layer
network, at P = 1 and P > 1; the emitted designs are verilator -Wall clean; impossible --parallel fails
with one located error; emitting twice gives byte-identical files."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from mpc.backends.base import lower
from mpc.backends.verilog import configured, render_rtl
from mpc.backends.verilog.layers import mac_schedule
from mpc.backends.verilog.sim import lint, simulate

from mpc.data import Dataset
from mpc.driver.verify_fx import emulator_io
from mpc.errors import BadFlag
from mpc.ir import parse

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("verilator") is None,
                                reason="needs iverilog and verilator (installed by .ci/run)")

MP = """graph @mp(%x: f32[N,6]) -> (%y: f32[N,4]) {
  weight @w : fx<8,6>[4,6]
  weight @s : i8[4,2]
  weight @sg : i8[4,2]
  %0 = fx.quantize(%x) {to = "fx<8,5>"} : fx<8,5>[N,6]
  %1 = fx.mp_dot(%0, @w, @s, @sg) {gamma = 100, to = "fx<12,8>", c_shift = -1} : fx<12,8>[N,4]
  %y = fx.dequantize(%1) : f32[N,4]
}"""

MAC = """graph @mac(%x: f32[N,7]) -> (%y: f32[N,6]) {
  weight @m : fx<6,4>[7,6]
  %0 = fx.quantize(%x) {to = "fx<8,4>"} : fx<8,4>[N,7]
  %1 = fx.matmul(%0, @m) {to = "fx<14,8>", overflow = wrap} : fx<14,8>[N,6]
  %y = fx.dequantize(%1) : f32[N,6]
}"""

CONV = """graph @conv(%x: f32[N,2,5,5]) -> (%y: f32[N,3,3,3]) {
  weight @k : fx<8,6>[3,2,3,3]
  weight @ks : i8[3,2]
  weight @kg : i8[3,2]
  %0 = fx.quantize(%x) {to = "fx<8,5>"} : fx<8,5>[N,2,5,5]
  %1 = fx.mp_conv2d(%0, @k, @ks, @kg) {gamma = 200, to = "fx<16,8>", c_shift = -1, strides = [2, 2], pads = [1, 1, 1, 1]} : fx<16,8>[N,3,3,3]
  %2 = fx.cast(%1) {to = "fx<10,6>"} : fx<10,6>[N,3,3,3]
  %y = fx.dequantize(%2) : f32[N,3,3,3]
}"""

NET = """graph @net(%x: f32[N,6]) -> (%y: f32[N,2]) {
  weight @w : fx<8,6>[4,6]
  weight @s : i8[4,2]
  weight @sg : i8[4,2]
  weight @b : fx<8,4>[4]
  weight @w2 : fx<8,6>[4,4]
  weight @s2 : i8[4,1]
  weight @sg2 : i8[4,1]
  weight @m : fx<6,4>[4,2]
  %0 = fx.quantize(%x) {to = "fx<8,5>"} : fx<8,5>[N,6]
  %1 = fx.mp_dot(%0, @w, @s, @sg) {gamma = 100, to = "fx<20,8>", c_shift = -1} : fx<20,8>[N,4]
  %2 = fx.add(%1, @b) {to = "fx<21,6>"} : fx<21,6>[N,4]
  %3 = fx.relu(%2) : fx<21,6>[N,4]
  %4 = fx.cast(%3) {to = "fx<8,4>"} : fx<8,4>[N,4]
  %5 = fx.mp_dot(%4, @w2, @s2, @sg2) {gamma = 300, to = "fx<16,6>"} : fx<16,6>[N,4]
  %6 = fx.cast(%5) {to = "fx<8,3>", rounding = floor} : fx<8,3>[N,4]
  %7 = fx.matmul(%6, @m) {to = "fx<18,7>"} : fx<18,7>[N,2]
  %8 = fx.cast(%7) {to = "fx<10,5>"} : fx<10,5>[N,2]
  %y = fx.dequantize(%8) : f32[N,2]
}"""


def _weights(rng) -> dict[str, np.ndarray]:
    w = {"w": rng.integers(-128, 128, (4, 6)), "s": rng.integers(0, 4, (4, 2)), "sg": rng.integers(-1, 2, (4, 2)),
         "b": rng.integers(-10, 40, 4), "w2": rng.integers(-128, 128, (4, 4)), "s2": rng.integers(0, 3, (4, 1)),
         "sg2": rng.integers(-1, 2, (4, 1)), "m": rng.integers(-32, 32, (7, 6)),
         "k": rng.integers(-128, 128, (3, 2, 3, 3)), "ks": rng.integers(0, 4, (3, 2)), "kg": rng.integers(-1, 2, (3, 2))}
    w["m"][2, :3] = 0   # a pruned weight pattern: a half-zero row ...
    w["m"][4] = 0       # ... and an all-zero row (no schedule entry: no cycle, no ROM word)
    w["sg"][0] = [1, -1]
    return {k: v.astype(np.int8) for k, v in w.items()}


def _graph(text: str, rng) -> object:
    w = _weights(rng)
    if "@net" in text:
        w["m"] = w["m"][:4, :2].copy()
    return parse(text, {k: v for k, v in w.items() if f"@{k} " in text})


def _run(tmp_path, text: str, parallel: int, samples: int = 24):
    """(emulator output integers, RTL output integers, latency, II, lowered graph)."""
    rng = np.random.default_rng(3)
    g = _graph(text, rng)
    x = rng.uniform(-3, 3, (samples, *g.inputs[0].type.shape[1:])).astype(np.float32)
    lowered, _ = lower(configured(parallel), g)
    qin, qout = emulator_io(lowered, Dataset({g.inputs[0].name: x}, None, "uniform"))
    rtl = render_rtl(lowered)
    win, wout = lowered.ops[0].result.type.dtype.width, lowered.outputs[0].producer.operands[0].type.dtype.width
    got, lat, ii = simulate(rtl, qin, win, qout.shape[1:], wout, tmp_path)
    return qout.astype(np.int64), got, lat, ii, lowered


CASES = {"mp-p1": (MP, 1), "mp-p2": (MP, 2), "mp-p4": (MP, 4), "mac-p1": (MAC, 1), "mac-p3": (MAC, 3),
         "conv-p1": (CONV, 1), "conv-p3": (CONV, 3),
         "net-p1": (NET, 1), "net-p2": (NET, 2)}


@pytest.mark.parametrize("text, parallel", list(CASES.values()), ids=list(CASES))
def test_rtl_equals_the_emulator(tmp_path, text, parallel):
    want, got, lat, ii, _ = _run(tmp_path, text, parallel)
    assert len(np.unique(want)) > 5   # the data exercises the datapath (not all zeros or saturated)
    assert got.shape == want.shape
    assert int((got != want).sum()) == 0
    assert 0 < ii <= lat + 2


def test_parallel_trades_cycles_for_pes(tmp_path):
    """MP at P = 4 runs 4 times fewer groups: each group takes halvings + 2 cycles (7 + 2 for gamma 100)."""
    lat = {p: _run(tmp_path / str(p), MP, p, samples=3)[2] for p in (1, 4)}
    # latency counts the input handshake cycle, the groups and the cycle that raises out_valid
    assert lat[1] - lat[4] == (4 - 1) * (7 + 2)


def test_pruned_mac_weights_have_no_schedule_entry():
    w = _weights(np.random.default_rng(3))["m"]
    entries = mac_schedule(w, 1)
    want = sum(max(1, int(np.count_nonzero(w[:, h]))) for h in range(w.shape[1]))   # one per non-zero weight
    assert len(entries) == want < w.size
    assert all(any(v != 0 for v in e[2]) for e in entries)


@pytest.mark.parametrize("text, parallel", [(MP, 2), (MAC, 1), (CONV, 3), (NET, 2)], ids=["mp", "mac", "conv", "net"])
def test_verilator_lint_clean(tmp_path, text, parallel):
    lowered, _ = lower(configured(parallel), _graph(text, np.random.default_rng(3)))
    for name, body in render_rtl(lowered).items():
        (tmp_path / name).write_text(body)
    assert lint(tmp_path) == ""


def _yosys_cells(tmp_path, text: str, script: str) -> str:
    lowered, _ = lower(configured(2), _graph(text, np.random.default_rng(3)))
    files = []
    tmp_path.mkdir()
    for name, body in render_rtl(lowered).items():
        (tmp_path / name).write_text(body)
        files.append(str(tmp_path / name))
    stat = tmp_path / "stat.txt"
    subprocess.run(["yosys", "-q", "-p", f"read_verilog {' '.join(files)}; {script}; tee -q -o {stat} stat"],
                   capture_output=True, text=True, check=True, timeout=600)
    return stat.read_text()


@pytest.mark.skipif(shutil.which("yosys") is None, reason="needs yosys (installed by .ci/run)")
def test_synthesized_mp_layer_has_no_multiplier(tmp_path):
    """After elaboration and constant folding Yosys keeps a $mul cell for every multiplication (the cells
    synth_ice40 -dsp / synth_xilinx map to SB_MAC16 / DSP48): the MAC layer has them (so the check can
    fail), the MP layer none."""
    flow = "hierarchy -top mpc_top; proc; flatten; opt -full; wreduce; opt"
    mac, mp = _yosys_cells(tmp_path / "mac", MAC, flow), _yosys_cells(tmp_path / "mp", MP, flow)
    assert "$mul" in mac and "$add" in mp and "$sub" in mp
    assert "$mul" not in mp


def test_impossible_parallel_is_one_located_error():
    with pytest.raises(BadFlag, match=r"--parallel 3: fx.mp_dot %1 has 4 output neurons, which 3 does not divide"):
        lower(configured(3), _graph(MP, np.random.default_rng(3)))


def test_same_graph_same_files():
    a = render_rtl(lower(configured(2), _graph(NET, np.random.default_rng(3)))[0])
    b = render_rtl(lower(configured(2), _graph(NET, np.random.default_rng(3)))[0])
    assert a == b and sorted(a) == ["l00_mp_dense.v", "l01_add.v", "l02_relu.v", "l03_cast.v", "l04_mp_dense.v",
                                    "l05_cast.v", "l06_mac_dense.v", "l07_cast.v", "mpc_top.v"]
